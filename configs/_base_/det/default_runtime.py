# mmdet's runtime, with checkpoints written crash-safely (temp file + rename; see mmreplk/engine).
_base_ = 'mmdet::_base_/default_runtime.py'
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))

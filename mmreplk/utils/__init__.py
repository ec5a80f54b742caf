"""Bottom of the package, knowing no model: checkpoint reading under the trust policy, the one
weight loader, state-dict key helpers, atomic writes, the timing harness and the errors every
layer may raise."""
from .checkpoint import (RUNNER_CHECKPOINT_GLOBALS, UntrustedCheckpointError, load_checkpoint_file,
                         trusted_checkpoints)
from .errors import (ConfigError, MissingDependencyError, MissingFileError, ToolError, UserError,
                     import_optional, require_dir, require_file)
from .fileio import TMP_SUFFIX, AtomicWriteError, atomic_write, remove_stale_tmp_files
from .keys import DDP_PREFIX, extract_backbone, holds_keys_ending, select_prefix, strip_prefixes
from .weights import (DEPLOY_ONLY_ATTR, STRICTNESS, CheckpointMismatchError, LoadReport,
                      deploy_only_keys, load_weights, read_state_dict, unwrap_state_dict)

__all__ = [
    'DDP_PREFIX', 'DEPLOY_ONLY_ATTR', 'RUNNER_CHECKPOINT_GLOBALS', 'STRICTNESS', 'TMP_SUFFIX',
    'AtomicWriteError', 'CheckpointMismatchError', 'ConfigError', 'LoadReport',
    'MissingDependencyError', 'MissingFileError', 'ToolError', 'UntrustedCheckpointError',
    'UserError', 'atomic_write', 'deploy_only_keys', 'extract_backbone', 'holds_keys_ending',
    'import_optional', 'load_checkpoint_file', 'load_weights', 'read_state_dict',
    'remove_stale_tmp_files', 'require_dir', 'require_file', 'select_prefix', 'strip_prefixes',
    'trusted_checkpoints', 'unwrap_state_dict'
]

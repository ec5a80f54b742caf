"""Bottom of the package: checkpoint reading under the trust policy, the one weight loader,
backbone key remapping, the timing harness and the errors every layer may raise."""
from .checkpoint import (RUNNER_CHECKPOINT_GLOBALS, UntrustedCheckpointError, load_checkpoint_file,
                         trusted_checkpoints)
from .fileio import TMP_SUFFIX, AtomicWriteError, atomic_write, remove_stale_tmp_files
from .errors import ConfigError, MissingDependencyError, ToolError, import_optional
from .state_dict import load_backbone_weights, match_state_dict, to_backbone_state_dict
from .weights import (STRICTNESS, CheckpointMismatchError, LoadReport, is_folded, load_weights,
                      read_state_dict, unwrap_state_dict)

__all__ = [
    'RUNNER_CHECKPOINT_GLOBALS', 'STRICTNESS', 'TMP_SUFFIX', 'AtomicWriteError', 'atomic_write',
    'remove_stale_tmp_files', 'CheckpointMismatchError', 'ConfigError',
    'LoadReport', 'MissingDependencyError', 'ToolError', 'UntrustedCheckpointError',
    'import_optional', 'is_folded', 'load_backbone_weights', 'load_checkpoint_file',
    'load_weights', 'match_state_dict', 'read_state_dict', 'to_backbone_state_dict',
    'trusted_checkpoints', 'unwrap_state_dict'
]

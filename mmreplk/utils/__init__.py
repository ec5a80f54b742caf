from .checkpoint import (RUNNER_CHECKPOINT_GLOBALS, UntrustedCheckpointError, load_checkpoint_file,
                         trusted_checkpoints)
from .state_dict import (LoadReport, load_backbone_weights, match_state_dict,
                         to_backbone_state_dict, unwrap_state_dict)

__all__ = [
    'RUNNER_CHECKPOINT_GLOBALS', 'LoadReport', 'UntrustedCheckpointError', 'load_backbone_weights',
    'load_checkpoint_file', 'match_state_dict', 'to_backbone_state_dict', 'trusted_checkpoints',
    'unwrap_state_dict'
]

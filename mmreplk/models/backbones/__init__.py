from .replknet import RepLKNet
from .replknet_weights import (ARCH_SETTINGS, arch_name, describe_arch, infer_arch,
                               load_backbone_weights, match_state_dict, read_backbone_state_dict,
                               to_backbone_state_dict)
from .unireplknet import UniRepLKNet

__all__ = [
    'ARCH_SETTINGS', 'RepLKNet', 'UniRepLKNet', 'arch_name', 'describe_arch', 'infer_arch',
    'load_backbone_weights', 'match_state_dict', 'read_backbone_state_dict',
    'to_backbone_state_dict'
]

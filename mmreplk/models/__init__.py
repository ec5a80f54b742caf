from .backbones import (RepLKNet, UniRepLKNet, arch_name, describe_arch, infer_arch,
                        load_backbone_weights, match_state_dict, read_backbone_state_dict,
                        to_backbone_state_dict)
from .reparameterize import is_folded, reparameterize

__all__ = [
    'RepLKNet', 'UniRepLKNet', 'arch_name', 'describe_arch', 'infer_arch', 'is_folded',
    'load_backbone_weights', 'match_state_dict', 'read_backbone_state_dict', 'reparameterize',
    'to_backbone_state_dict'
]

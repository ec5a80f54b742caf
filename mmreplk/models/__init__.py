from .backbones import RepLKNet, UniRepLKNet
from .reparameterize import reparameterize

__all__ = ['RepLKNet', 'UniRepLKNet', 'reparameterize']

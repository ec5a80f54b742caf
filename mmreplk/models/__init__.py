from .backbones import RepLKNet
from .reparameterize import reparameterize

__all__ = ['RepLKNet', 'reparameterize']

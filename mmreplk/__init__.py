"""mmreplk: RepLKNet large-kernel CNNs for dense prediction on the OpenMMLab stack."""
from . import utils  # noqa: F401  (registers the checkpoint trust policy with mmengine)
from . import engine  # noqa: F401  (registers CrashSafeCheckpointHook and the atomic file backend)
from .models import RepLKNet, UniRepLKNet, reparameterize

__version__ = '0.1.0'

__all__ = ['RepLKNet', 'UniRepLKNet', 'reparameterize', '__version__']

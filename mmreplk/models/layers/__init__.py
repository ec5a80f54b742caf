from .conv_bn import ConvBN
from .fusion import fuse_bn_pointwise_conv, fuse_conv_bn
from .reparam_large_kernel import ReparamLargeKernelConv
from .replk_blocks import ConvFFN, RepLKBlock

__all__ = [
    'ConvBN', 'ConvFFN', 'RepLKBlock', 'ReparamLargeKernelConv', 'fuse_bn_pointwise_conv',
    'fuse_conv_bn'
]

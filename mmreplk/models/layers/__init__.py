from .conv_bn import ConvBN
from .dilated_reparam import DILATED_BRANCHES, DilatedReparamBlock, dilate_kernel
from .fusion import fuse_bn_pointwise_conv, fuse_conv_bn
from .reparam_large_kernel import ReparamLargeKernelConv
from .replk_blocks import ConvFFN, RepLKBlock
from .unireplk_blocks import (GRN, ChannelsFirstLayerNorm, SEBlock, ToChannelsFirst,
                              ToChannelsLast, UniRepLKNetBlock)

__all__ = [
    'DILATED_BRANCHES', 'GRN', 'ChannelsFirstLayerNorm', 'ConvBN', 'ConvFFN',
    'DilatedReparamBlock', 'RepLKBlock', 'ReparamLargeKernelConv', 'SEBlock', 'ToChannelsFirst',
    'ToChannelsLast', 'UniRepLKNetBlock', 'dilate_kernel', 'fuse_bn_pointwise_conv',
    'fuse_conv_bn'
]

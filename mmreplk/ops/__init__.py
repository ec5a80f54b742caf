from .depthwise_conv import (IMPLEMENTATIONS, DepthwiseConv2d, build_depthwise_conv,
                             depthwise_conv2d, prefers_channels_last, set_depthwise_impl)

__all__ = [
    'IMPLEMENTATIONS', 'DepthwiseConv2d', 'build_depthwise_conv', 'depthwise_conv2d',
    'prefers_channels_last', 'set_depthwise_impl'
]

from .depthwise_conv import (CHANNELS_LAST_MIN_KERNEL, IMPLEMENTATIONS, TRITON_MIN_KERNEL,
                             DepthwiseConv2d, build_depthwise_conv, depthwise_conv2d,
                             prefers_channels_last, select_depthwise_impl, set_depthwise_impl,
                             triton_available)

__all__ = [
    'CHANNELS_LAST_MIN_KERNEL', 'IMPLEMENTATIONS', 'TRITON_MIN_KERNEL', 'DepthwiseConv2d',
    'build_depthwise_conv', 'depthwise_conv2d', 'prefers_channels_last', 'select_depthwise_impl',
    'set_depthwise_impl', 'triton_available'
]

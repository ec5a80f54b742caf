from .backends import DWCONV_BACKENDS, PASSES, DepthwiseBackend, triton_available
from .depthwise_conv import (DepthwiseConv2d, build_depthwise_conv, depthwise_conv2d,
                             implementations, set_depthwise_impl)
from .precision import fp32_convs_use_tf32, width_alignment
from .tuning import autotune_entries
from .dispatch import (Bucket, Choice, DepthwiseDispatcher, get_dispatcher, measure_candidates,
                       use_dispatcher)

__all__ = [
    'DWCONV_BACKENDS', 'PASSES', 'autotune_entries', 'fp32_convs_use_tf32', 'width_alignment', 'Bucket', 'Choice', 'DepthwiseBackend', 'DepthwiseConv2d',
    'DepthwiseDispatcher', 'build_depthwise_conv', 'depthwise_conv2d',
    'get_dispatcher', 'implementations', 'measure_candidates', 'set_depthwise_impl',
    'triton_available', 'use_dispatcher'
]

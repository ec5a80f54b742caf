"""The large-kernel depth-wise conv: one PyTorch custom op, its backends, and the dispatcher.

From a conv to its kernel launch (6 calls), here for the banded tensor-core kernel::

    DepthwiseConv2d.forward                       depthwise_conv.py  (nn.Conv2d parameters)
     1 -> depthwise_conv2d(x, w, b, impl)         depthwise_conv.py  checks, autocast, tracing
     2 -> torch.ops.mmreplk.depthwise_conv2d      depthwise_conv.py  custom op (+ autograd, fake)
     3 -> DepthwiseDispatcher.run('forward', ...) dispatch.py        forced impl, or the bucket's
                                                                     measured choice ('auto')
     4 -> TritonBandedBackend.forward             backends.py        one registered class per way
     5 -> triton.banded.forward                   triton/banded.py   output, grid, precision
     6 -> Kernel.launch                           triton/launch.py   device guard, sizes, bucket
          -> forward_kernel[grid] (autotuned)                        key, alignment, autotuning

The input gradient is the forward on the flipped kernel (``DepthwiseBackend.input_grad``, step
4); the weight gradient takes the same path through ``weight_grad``. Backends (``impl=``):
``nchw`` and ``channels_last`` (PyTorch's own conv and backward on that layout), ``cpu`` (our
oneDNN path, :mod:`._cpu_depthwise`), ``triton`` (the first Triton kernel, fp32-accurate, forced
by name only), ``triton_banded`` and ``triton_toeplitz`` (tensor-core kernels,
:mod:`mmreplk.ops.triton`). Each backend declares what it cannot run and what ``auto`` skips;
the dispatcher measures the rest per bucket. Triton is imported only when a Triton backend runs.
"""
from .backends import DWCONV_BACKENDS, PASSES, DepthwiseBackend, triton_available
from .depthwise_conv import (DepthwiseConv2d, build_depthwise_conv, depthwise_conv2d,
                             implementations, set_depthwise_impl)
from .dispatch import (Bucket, Choice, DepthwiseDispatcher, get_dispatcher, measure_candidates,
                       use_dispatcher)
from .precision import fp32_convs_use_tf32, width_alignment
from .triton import autotune_entries

__all__ = [
    'DWCONV_BACKENDS', 'PASSES', 'Bucket', 'Choice', 'DepthwiseBackend', 'DepthwiseConv2d',
    'DepthwiseDispatcher', 'autotune_entries', 'build_depthwise_conv', 'depthwise_conv2d',
    'fp32_convs_use_tf32', 'get_dispatcher', 'implementations', 'measure_candidates',
    'set_depthwise_impl', 'triton_available', 'use_dispatcher', 'width_alignment'
]

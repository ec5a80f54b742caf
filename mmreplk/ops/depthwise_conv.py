"""Depth-wise convolution with "same" padding, dispatched to the fastest exact path per device.

Large depth-wise kernels are where RepLKNet spends its time, and PyTorch's default paths for them
are slow (measure with ``tools/analysis/benchmark_dwconv.py``):

* CPU: oneDNN runs an NCHW depth-wise conv with a large kernel through im2col + GEMM, while the
  same conv on a ``channels_last`` tensor uses a direct depth-wise kernel that is 7-15x faster;
  PyTorch's weight gradient for large kernels is slower still, and half precision has no fast
  kernel at all. Our CPU path (:mod:`mmreplk.ops._cpu_depthwise`) fixes all three.
* GPU: fp32 NCHW depth-wise convs go to PyTorch's own kernel and ``channels_last`` ones to cuDNN;
  large kernels run on our Triton kernel instead (:mod:`mmreplk.ops._triton_depthwise`).

Every path computes the same convolution as ``F.conv2d(x, w, b, padding=K // 2, groups=C)``,
accumulating in fp32 or wider; only the memory layout of the output may differ, and every later
PyTorch op accepts either layout.
"""
from __future__ import annotations

import importlib
import importlib.util

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._cpu_depthwise import CPUDepthwiseConv2dFunction, conv_forward

#: Kernels at least this large take the channels_last path (below it NCHW is as fast).
CHANNELS_LAST_MIN_KERNEL = 7

#: Kernels at least this large take the Triton path on CUDA. Smaller kernels are memory-bound,
#: where cuDNN / PyTorch already run at bandwidth and the banded formulation wastes the most.
TRITON_MIN_KERNEL = 7

#: 'auto' dispatches; the others force one path (benchmarks and tests):
#: 'nchw' PyTorch on a contiguous tensor (the reference), 'channels_last' PyTorch on a
#: channels_last tensor (oneDNN / cuDNN), 'cpu' our CPU path (oneDNN forward and input gradient,
#: weight gradient as a per-plane conv, fp16/bf16 computed in fp32; runs on any device),
#: 'triton' our Triton kernel (CUDA, or CPU tensors under TRITON_INTERPRET=1).
IMPLEMENTATIONS = ('auto', 'nchw', 'channels_last', 'cpu', 'triton')

_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_impl(impl: str) -> None:
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'unknown depth-wise conv impl {impl!r}; choose from {IMPLEMENTATIONS}')


def triton_available() -> bool:
    """Whether the Triton package can be imported (it ships with CUDA builds of torch)."""
    return importlib.util.find_spec('triton') is not None


def prefers_channels_last(device: torch.device | str, kernel_size: int) -> bool:
    """Whether PyTorch runs a depth-wise conv of ``kernel_size`` faster on ``channels_last`` input.

    Args:
        device (torch.device | str): Device the conv runs on.
        kernel_size (int): Side of the square kernel.

    Returns:
        bool: True when PyTorch's channels_last path is the faster one.
    """
    device = torch.device(device)
    return device.type in ('cpu', 'cuda') and kernel_size >= CHANNELS_LAST_MIN_KERNEL


def select_depthwise_impl(device: torch.device | str, dtype: torch.dtype, kernel_size: int,
                          prefer_triton: bool = False) -> str:
    """The implementation ``impl='auto'`` runs for a device, dtype and kernel size.

    Rules: CUDA with Triton installed, fp32/fp16/bf16, ``K >= TRITON_MIN_KERNEL`` and
    ``prefer_triton`` -> 'triton';
    CPU with fp16/bf16 or ``K >= CHANNELS_LAST_MIN_KERNEL`` -> 'cpu'; otherwise 'channels_last'
    where :func:`prefers_channels_last` says so, else 'nchw'. Triton is never chosen on CPU.

    Args:
        device (torch.device | str): Device of the input.
        dtype (torch.dtype): Dtype of the input.
        kernel_size (int): Side of the square kernel.
        prefer_triton (bool): Pick the Triton kernel on CUDA. Off by default until the kernel
            has been validated and timed on real GPUs (so far it is verified through Triton's
            interpreter and an sm_90 compile only); 'auto' runs cuDNN channels_last there, and
            ``impl='triton'`` selects the kernel explicitly. Defaults to False.

    Returns:
        str: One of :data:`IMPLEMENTATIONS` other than 'auto'.
    """
    device = torch.device(device)
    if (prefer_triton and device.type == 'cuda' and dtype in _TRITON_DTYPES
            and kernel_size >= TRITON_MIN_KERNEL and triton_available()):
        return 'triton'
    if device.type == 'cpu' and (dtype in (torch.float16, torch.bfloat16)
                                 or kernel_size >= CHANNELS_LAST_MIN_KERNEL):
        return 'cpu'
    return 'channels_last' if prefers_channels_last(device, kernel_size) else 'nchw'


def _triton_conv(x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    if not triton_available():
        raise RuntimeError("impl='triton' needs the triton package: pip install triton "
                           "(CUDA builds of torch ship it), or use impl='auto'")
    if torch.is_autocast_enabled(x.device.type):
        # Mirror F.conv2d under autocast: all operands in the autocast dtype.
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    if x.dtype not in _TRITON_DTYPES or weight.dtype != x.dtype or (
            bias is not None and bias.dtype != x.dtype):
        raise TypeError("impl='triton' needs input, weight and bias of one dtype among "
                        f'{_TRITON_DTYPES}, got {x.dtype}/{weight.dtype}/'
                        f'{None if bias is None else bias.dtype}')
    kernels = importlib.import_module('._triton_depthwise', __package__)
    return kernels.TritonDepthwiseConv2dFunction.apply(x, weight, bias)


def depthwise_conv2d(x: torch.Tensor,
                     weight: torch.Tensor,
                     bias: torch.Tensor | None = None,
                     impl: str = 'auto') -> torch.Tensor:
    """Depth-wise 2D convolution, stride 1, "same" padding for a square odd kernel.

    Args:
        x (torch.Tensor): Input of shape (N, C, H, W).
        weight (torch.Tensor): Kernel of shape (C, 1, K, K) with K odd.
        bias (torch.Tensor, optional): Bias of shape (C,). Defaults to None.
        impl (str): One of :data:`IMPLEMENTATIONS`; 'auto' runs
            :func:`select_depthwise_impl`. Defaults to 'auto'.

    Returns:
        torch.Tensor: Output of shape (N, C, H, W) in the dtype of ``x``, equal to
        ``F.conv2d(x, weight, bias, padding=K // 2, groups=C)``.
    """
    channels, per_group, kh, kw = weight.shape
    if per_group != 1 or kh != kw or kh % 2 == 0:
        raise ValueError('depthwise_conv2d expects a (C, 1, K, K) kernel with odd K, '
                         f'got weight of shape {tuple(weight.shape)}')
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'depthwise_conv2d expects input (N, {channels}, H, W), '
                         f'got {tuple(x.shape)}')
    _check_impl(impl)
    if impl == 'auto':
        impl = select_depthwise_impl(x.device, x.dtype, kh)
    tracing = torch.jit.is_tracing()
    if impl == 'triton' and tracing:
        # A traced graph (ONNX export) must consist of standard ops; the Triton kernel is not one.
        impl = 'channels_last'
    if impl == 'triton':
        return _triton_conv(x, weight, bias)
    if impl == 'cpu':
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, weight, bias))
        if needs_grad and not tracing:
            return CPUDepthwiseConv2dFunction.apply(x, weight, bias)
        return conv_forward(x, weight, bias)
    memory_format = torch.channels_last if impl == 'channels_last' else torch.contiguous_format
    return F.conv2d(x.contiguous(memory_format=memory_format), weight, bias, padding=kh // 2,
                    groups=channels)


class DepthwiseConv2d(nn.Conv2d):
    """A depth-wise ``nn.Conv2d`` with "same" padding that runs through :func:`depthwise_conv2d`.

    It keeps ``nn.Conv2d``'s parameters (``weight`` of shape (C, 1, K, K) and optional ``bias``),
    so state dicts are interchangeable with a plain depth-wise ``nn.Conv2d``.

    Args:
        channels (int): Number of input and output channels.
        kernel_size (int): Side of the square kernel; must be odd.
        bias (bool): Whether to add a learnable bias. Defaults to False.
        impl (str): Implementation, see :func:`depthwise_conv2d`. Defaults to 'auto'.
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = False,
                 impl: str = 'auto') -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd for "same" padding, got {kernel_size}')
        _check_impl(impl)
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2,
                         groups=channels, bias=bias)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.impl)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', impl={self.impl}'


def build_depthwise_conv(channels: int, kernel_size: int, bias: bool = False) -> nn.Module:
    """The factory every large-kernel depth-wise conv of the package is built through.

    Args:
        channels (int): Number of channels.
        kernel_size (int): Side of the square, odd kernel.
        bias (bool): Whether the conv has a bias. Defaults to False.

    Returns:
        nn.Module: A :class:`DepthwiseConv2d` dispatching with ``impl='auto'``.
    """
    return DepthwiseConv2d(channels, kernel_size, bias=bias)


def set_depthwise_impl(model: nn.Module, impl: str) -> nn.Module:
    """Sets the implementation of every :class:`DepthwiseConv2d` in ``model`` (for benchmarks).

    Args:
        model (nn.Module): Any model.
        impl (str): One of :data:`IMPLEMENTATIONS`.

    Returns:
        nn.Module: ``model`` itself.
    """
    _check_impl(impl)
    for module in model.modules():
        if isinstance(module, DepthwiseConv2d):
            module.impl = impl
    return model

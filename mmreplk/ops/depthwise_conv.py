"""Depth-wise convolution with "same" padding, dispatched to the fastest exact path per device.

Large depth-wise kernels are where RepLKNet spends its time. PyTorch's default paths for them are
slow in two well-measured cases (see ``tools/analysis/benchmark_dwconv.py``):

* CPU: oneDNN runs an NCHW depth-wise conv with a large kernel through im2col + GEMM, while the
  same conv on a ``channels_last`` tensor uses a direct depth-wise kernel that is 7-12x faster.
* GPU: fp32 NCHW depth-wise convs go to PyTorch's own kernel; ``channels_last`` reaches cuDNN.

The dispatcher below therefore runs large kernels in ``channels_last``. The result is
numerically the same convolution; only the memory layout of the output differs, and every later
PyTorch op accepts either layout.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Kernels at least this large take the channels_last path (below it NCHW is as fast).
CHANNELS_LAST_MIN_KERNEL = 7


def prefers_channels_last(device: torch.device | str, kernel_size: int) -> bool:
    """Whether a depth-wise conv of ``kernel_size`` runs faster on ``channels_last`` input.

    Args:
        device (torch.device | str): Device the conv runs on.
        kernel_size (int): Side of the square kernel.

    Returns:
        bool: True when the channels_last path is the faster one.
    """
    device = torch.device(device)
    return device.type in ('cpu', 'cuda') and kernel_size >= CHANNELS_LAST_MIN_KERNEL


IMPLEMENTATIONS = ('auto', 'nchw', 'channels_last')


def depthwise_conv2d(x: torch.Tensor,
                     weight: torch.Tensor,
                     bias: torch.Tensor | None = None,
                     impl: str = 'auto') -> torch.Tensor:
    """Depth-wise 2D convolution, stride 1, "same" padding for a square odd kernel.

    Args:
        x (torch.Tensor): Input of shape (N, C, H, W).
        weight (torch.Tensor): Kernel of shape (C, 1, K, K) with K odd.
        bias (torch.Tensor, optional): Bias of shape (C,). Defaults to None.
        impl (str): 'auto' picks the fastest exact path for the device and kernel size;
            'nchw' forces PyTorch's contiguous-layout path (the reference), 'channels_last'
            forces that layout. Defaults to 'auto'.

    Returns:
        torch.Tensor: Output of shape (N, C, H, W), equal to
        ``F.conv2d(x, weight, bias, padding=K // 2, groups=C)``.
    """
    channels, per_group, kh, kw = weight.shape
    if per_group != 1 or kh != kw or kh % 2 == 0:
        raise ValueError('depthwise_conv2d expects a (C, 1, K, K) kernel with odd K, '
                         f'got weight of shape {tuple(weight.shape)}')
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'depthwise_conv2d expects input (N, {channels}, H, W), '
                         f'got {tuple(x.shape)}')
    if impl == 'auto':
        impl = 'channels_last' if prefers_channels_last(x.device, kh) else 'nchw'
    if impl == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    elif impl == 'nchw':
        x = x.contiguous()
    else:
        raise ValueError(f'unknown depth-wise conv impl {impl!r}; choose from {IMPLEMENTATIONS}')
    return F.conv2d(x, weight, bias, padding=kh // 2, groups=channels)


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
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f'unknown depth-wise conv impl {impl!r}; choose from {IMPLEMENTATIONS}')
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
        nn.Module: A :class:`DepthwiseConv2d`.
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
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'unknown depth-wise conv impl {impl!r}; choose from {IMPLEMENTATIONS}')
    for module in model.modules():
        if isinstance(module, DepthwiseConv2d):
            module.impl = impl
    return model

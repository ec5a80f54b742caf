"""Depth-wise convolution with "same" padding: a PyTorch custom op whose every pass runs on the
backend measured fastest (or a forced one).

Large depth-wise kernels are where RepLKNet spends its time, and PyTorch's default paths for them
are slow: on CPUs oneDNN runs a large-kernel NCHW depth-wise conv through im2col + GEMM and its
weight gradient is pathological; on GPUs cuDNN (``channels_last``) is 10x slower than PyTorch's
native NCHW kernel at K = 31. :mod:`mmreplk.ops.backends` holds the ways to compute each pass and
:mod:`mmreplk.ops.dispatch` picks among them by measurement.

The op is registered with ``torch.library`` as ``torch.ops.mmreplk.depthwise_conv2d`` (with its
two gradient ops), with fake (meta) implementations and an autograd formula, so
``torch.compile`` keeps it whole: Inductor never rewrites the large-kernel convs into
``channels_last`` (its layout optimisation would, which is the slow cuDNN path) and the choice of
kernel still happens at run time. Every backend computes ``F.conv2d(x, w, b, padding=K // 2,
groups=C)`` accumulating in fp32 or wider; the output has the input's memory layout.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dispatch import get_dispatcher


def implementations() -> tuple[str, ...]:
    """Every valid ``impl``: 'auto' (measure and choose per pass) or a backend that forces one
    path ('nchw', 'channels_last', 'cpu', 'triton', ...)."""
    return ('auto', ) + get_dispatcher().names


def _check_impl(impl: str) -> None:
    if impl not in implementations():
        raise ValueError(f'unknown depth-wise conv impl {impl!r}; choose from {implementations()}')


def _layout_of(tensor: torch.Tensor) -> torch.memory_format:
    """The layout an op result takes after ``tensor``: channels_last only for a tensor that is
    channels_last and not also contiguous (so a result's strides are known before it exists)."""
    if tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@torch.library.custom_op('mmreplk::depthwise_conv2d', mutates_args=())
def _conv_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
             impl: str) -> torch.Tensor:
    out = get_dispatcher().run('forward', impl, x, weight, bias)
    return out.to(x.dtype).contiguous(memory_format=_layout_of(x))


@_conv_op.register_fake
def _(x, weight, bias, impl):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=_layout_of(x))


@torch.library.custom_op('mmreplk::depthwise_conv2d_input_grad', mutates_args=())
def _input_grad_op(grad_out: torch.Tensor, weight: torch.Tensor, impl: str) -> torch.Tensor:
    grad = get_dispatcher().run('input_grad', impl, grad_out, weight)
    return grad.to(grad_out.dtype).contiguous(memory_format=_layout_of(grad_out))


@_input_grad_op.register_fake
def _(grad_out, weight, impl):
    return torch.empty(grad_out.shape, dtype=grad_out.dtype, device=grad_out.device,
                       memory_format=_layout_of(grad_out))


@torch.library.custom_op('mmreplk::depthwise_conv2d_weight_grad', mutates_args=())
def _weight_grad_op(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor,
                    impl: str) -> torch.Tensor:
    grad = get_dispatcher().run('weight_grad', impl, x, grad_out, weight.shape[-1])
    # Laid out like the weight: DDP copies (and warns about) a gradient that is not.
    return torch.empty_like(weight).copy_(grad)


@_weight_grad_op.register_fake
def _(x, grad_out, weight, impl):
    return torch.empty_like(weight)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, impl = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None
    ctx.impl = impl


def _backward(ctx, grad_out: torch.Tensor):
    x, weight = ctx.saved_tensors
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = _input_grad_op(grad_out, weight, ctx.impl)
    if ctx.needs_input_grad[1]:
        grad_w = _weight_grad_op(x, grad_out, weight, ctx.impl)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        accumulate = torch.promote_types(grad_out.dtype, torch.float32)
        grad_b = grad_out.sum((0, 2, 3), dtype=accumulate).to(weight.dtype)
    return grad_x, grad_w, grad_b, None


_conv_op.register_autograd(_backward, setup_context=_setup_context)


def depthwise_conv2d(x: torch.Tensor,
                     weight: torch.Tensor,
                     bias: Optional[torch.Tensor] = None,
                     impl: str = 'auto') -> torch.Tensor:
    """Depth-wise 2D convolution, stride 1, "same" padding for a square odd kernel.

    Args:
        x (torch.Tensor): Input of shape (N, C, H, W).
        weight (torch.Tensor): Kernel of shape (C, 1, K, K) with K odd.
        bias (torch.Tensor, optional): Bias of shape (C,). Defaults to None.
        impl (str): 'auto' measures the registered backends per pass and runs the fastest;
            a backend name from :func:`implementations` forces it. Defaults to 'auto'.

    Returns:
        torch.Tensor: Output of shape (N, C, H, W) in the dtype and memory layout of ``x``,
        equal to ``F.conv2d(x, weight, bias, padding=K // 2, groups=C)``.
    """
    channels, per_group, kh, kw = weight.shape
    if torch.jit.is_tracing():
        # A traced graph (ONNX export) must consist of standard ops; F.conv2d checks the shapes
        # (checking them here would turn traced sizes into Python values: TracerWarnings).
        return F.conv2d(x, weight, bias, padding=kh // 2, groups=channels)
    if per_group != 1 or kh != kw or kh % 2 == 0:
        raise ValueError('depthwise_conv2d expects a (C, 1, K, K) kernel with odd K, '
                         f'got weight of shape {tuple(weight.shape)}')
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'depthwise_conv2d expects input (N, {channels}, H, W), '
                         f'got {tuple(x.shape)}')
    _check_impl(impl)
    if torch.is_autocast_enabled(x.device.type):
        # Custom ops are outside autocast's op lists: mirror what it does for F.conv2d.
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    elif weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError('depthwise_conv2d expects input, weight and bias of one dtype, got '
                        f'{x.dtype}/{weight.dtype}/{None if bias is None else bias.dtype}')
    return _conv_op(x, weight, bias, impl)


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


def build_depthwise_conv(channels: int, kernel_size: int, bias: bool = False,
                         impl: str = 'auto') -> nn.Module:
    """The factory every large-kernel depth-wise conv of the package is built through.

    Args:
        channels (int): Number of channels.
        kernel_size (int): Side of the square, odd kernel.
        bias (bool): Whether the conv has a bias. Defaults to False.
        impl (str): Implementation, see :func:`depthwise_conv2d`. Defaults to 'auto'.

    Returns:
        nn.Module: A :class:`DepthwiseConv2d`.
    """
    return DepthwiseConv2d(channels, kernel_size, bias=bias, impl=impl)


def set_depthwise_impl(model: nn.Module, impl: str) -> nn.Module:
    """Sets the implementation of every :class:`DepthwiseConv2d` in ``model``.

    Args:
        model (nn.Module): Any model.
        impl (str): One of :func:`implementations`.

    Returns:
        nn.Module: ``model`` itself.
    """
    _check_impl(impl)
    for module in model.modules():
        if isinstance(module, DepthwiseConv2d):
            module.impl = impl
    return model

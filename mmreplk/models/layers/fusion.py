"""Pure functions that fold batch-norm layers into adjacent convolutions."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmreplk.ops import build_depthwise_conv


def _bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` with ``bn(x) == x * scale + shift`` in eval mode."""
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'only BatchNorm-type layers can be folded into a conv, got {type(bn).__name__}; '
                        're-parameterization needs norm_cfg=dict(type="BN") or "SyncBN"')
    std = torch.sqrt(bn.running_var + bn.eps)
    weight = bn.weight if bn.affine else torch.ones_like(std)
    bias = bn.bias if bn.affine else torch.zeros_like(std)
    scale = weight / std
    return scale, bias - bn.running_mean * scale


def fuse_conv_bn(weight: torch.Tensor, bias: torch.Tensor | None,
                 bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Folds a BN that follows a conv: ``bn(conv(x)) == conv'(x)``.

    Args:
        weight (torch.Tensor): Conv kernel of shape (O, I/g, kh, kw).
        bias (torch.Tensor, optional): Conv bias of shape (O,), or None.
        bn (nn.Module): A BatchNorm layer over the O output channels.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: Folded kernel and bias.
    """
    scale, shift = _bn_scale_shift(bn)
    fused_bias = shift if bias is None else bias * scale + shift
    return weight * scale.reshape(-1, 1, 1, 1), fused_bias


def fuse_bn_pointwise_conv(bn: nn.Module, weight: torch.Tensor,
                           bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Folds a BN that precedes a 1x1 conv: ``conv(bn(x)) == conv'(x)``.

    Exact only for a 1x1, ungrouped conv without padding, the only place the network uses it.

    Args:
        bn (nn.Module): A BatchNorm layer over the I input channels.
        weight (torch.Tensor): Conv kernel of shape (O, I, 1, 1).
        bias (torch.Tensor, optional): Conv bias of shape (O,), or None.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: Folded kernel and bias.
    """
    if weight.shape[2:] != (1, 1):
        raise ValueError(f'a preceding BN folds only into a 1x1 conv, got kernel {tuple(weight.shape)}')
    scale, shift = _bn_scale_shift(bn)
    fused_bias = weight[:, :, 0, 0] @ shift
    if bias is not None:
        fused_bias = fused_bias + bias
    return weight * scale.reshape(1, -1, 1, 1), fused_bias


def centre_pad(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pads a square kernel to ``size`` x ``size`` around its centre, so that with "same"
    padding it computes what the smaller kernel did.

    Args:
        kernel (torch.Tensor): Kernel of shape (O, I, k, k), k odd.
        size (int): Target side, odd and at least k.

    Returns:
        torch.Tensor: Kernel of shape (O, I, size, size).
    """
    pad = (size - kernel.shape[-1]) // 2
    if pad < 0:
        raise ValueError(f'a {kernel.shape[-1]}x{kernel.shape[-1]} kernel does not fit in '
                         f'{size}x{size}')
    return F.pad(kernel, [pad] * 4)


@torch.no_grad()
def folded_depthwise_conv(kernel: torch.Tensor, bias: torch.Tensor, impl: str) -> nn.Module:
    """A fresh biased depth-wise conv holding a folded kernel and bias.

    Args:
        kernel (torch.Tensor): Kernel of shape (C, 1, K, K).
        bias (torch.Tensor): Bias of shape (C,).
        impl (str): Implementation of the conv; pass the trained conv's ``impl`` so that a
            forced implementation survives folding.

    Returns:
        nn.Module: The conv, on the kernel's device and in its dtype.
    """
    conv = build_depthwise_conv(kernel.shape[0], kernel.shape[-1], bias=True, impl=impl)
    conv.to(device=kernel.device, dtype=kernel.dtype)
    conv.weight.copy_(kernel)
    conv.bias.copy_(bias)
    return conv

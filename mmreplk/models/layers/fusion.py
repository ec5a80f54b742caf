"""Pure functions that fold batch-norm layers into adjacent convolutions."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


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

"""Convolution followed by a norm layer (and optionally an activation), foldable into one conv."""
from __future__ import annotations

import torch
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from mmreplk.ops import build_depthwise_conv
from .fusion import fuse_bn_pointwise_conv, fuse_conv_bn


class ConvBN(BaseModule):
    """``conv`` -> ``bn`` -> optional ``nonlinear``, with the official RepLKNet child names.

    Training form: ``conv`` (no bias) and ``bn``. Deploy form: ``conv`` with a bias and no ``bn``.
    Depth-wise convs with "same" padding go through :func:`mmreplk.ops.build_depthwise_conv`.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Side of the square kernel.
        stride (int): Stride. Defaults to 1.
        groups (int): Conv groups. Defaults to 1.
        norm_cfg (dict): Config of the norm layer. Defaults to ``dict(type='BN')``.
        act_cfg (dict, optional): Config of the activation, or None for none. Defaults to None.
        deploy (bool): Build the folded form directly. Defaults to False.
        dwconv_impl (str): Implementation of a depth-wise "same" conv, see
            :func:`mmreplk.ops.depthwise_conv2d`. Defaults to 'auto'.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 stride: int = 1,
                 groups: int = 1,
                 norm_cfg: dict | None = None,
                 act_cfg: dict | None = None,
                 deploy: bool = False,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        self.deploy = deploy
        depthwise_same = (groups == in_channels == out_channels and stride == 1
                          and kernel_size > 1 and kernel_size % 2 == 1)
        if depthwise_same:
            self.conv = build_depthwise_conv(out_channels, kernel_size, bias=deploy,
                                             impl=dwconv_impl)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                  padding=kernel_size // 2, groups=groups, bias=deploy)
        if not deploy:
            self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        if act_cfg is not None:
            self.nonlinear = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not self.deploy:
            x = self.bn(x)
        if hasattr(self, 'nonlinear'):
            x = self.nonlinear(x)
        return x

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the single conv equal to ``bn(conv(x))``."""
        if self.deploy:
            return self.conv.weight, self.conv.bias
        return fuse_conv_bn(self.conv.weight, self.conv.bias, self.bn)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Folds ``bn`` into ``conv`` in place. Idempotent."""
        if self.deploy:
            return
        self._set_conv(*self.get_equivalent_kernel_bias())
        del self.bn
        self.deploy = True

    @torch.no_grad()
    def absorb_preceding_bn(self, bn: nn.Module) -> None:
        """Folds a BN applied to this (1x1) conv's input into the conv, after :meth:`reparameterize`."""
        self.reparameterize()
        self._set_conv(*fuse_bn_pointwise_conv(bn, self.conv.weight, self.conv.bias))

    def _set_conv(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        if self.conv.bias is None:
            self.conv.bias = nn.Parameter(torch.empty_like(bias))
        self.conv.weight.copy_(weight)
        self.conv.bias.copy_(bias)

"""The two residual blocks RepLKNet stages alternate: RepLKBlock and ConvFFN."""
from __future__ import annotations

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch import nn

from .conv_bn import ConvBN
from .reparam_large_kernel import ReparamLargeKernelConv


class _ResidualBlock(BaseModule):
    """Shared residual plumbing: ``x + drop_path(branch(x))``, optionally checkpointed."""

    def __init__(self, drop_path_rate: float, with_cp: bool, deploy: bool,
                 init_cfg: dict | None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.deploy = deploy
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self.branch, x, use_reentrant=False)
        else:
            out = self.branch(x)
        return x + self.drop_path(out)


class RepLKBlock(_ResidualBlock):
    """``prelkb_bn`` -> ``pw1`` (1x1, ReLU) -> ``large_kernel`` -> ReLU -> ``pw2`` (1x1) + residual.

    Deploy form folds ``prelkb_bn`` into ``pw1`` and every BN into its conv.

    Args:
        in_channels (int): Block input/output channels C.
        dw_channels (int): Channels D of the large-kernel depth-wise conv.
        kernel_size (int): Large kernel side.
        small_kernel (int, optional): Parallel small kernel side, or None.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        norm_cfg (dict, optional): Config of the norm layers. Defaults to ``dict(type='BN')``.
        with_cp (bool): Use gradient checkpointing. Defaults to False.
        deploy (bool): Build the folded form directly. Defaults to False.
        dwconv_impl (str): Implementation of the depth-wise convs, see
            :func:`mmreplk.ops.depthwise_conv2d`. Defaults to 'auto'.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 dw_channels: int,
                 kernel_size: int,
                 small_kernel: int | None,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict | None = None,
                 with_cp: bool = False,
                 deploy: bool = False,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | None = None) -> None:
        super().__init__(drop_path_rate, with_cp, deploy, init_cfg)
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        self.prelkb_bn = nn.Identity() if deploy else build_norm_layer(norm_cfg, in_channels)[1]
        self.pw1 = ConvBN(in_channels, dw_channels, 1, norm_cfg=norm_cfg,
                          act_cfg=dict(type='ReLU'), deploy=deploy)
        self.large_kernel = ReparamLargeKernelConv(dw_channels, kernel_size, small_kernel,
                                                   norm_cfg=norm_cfg, deploy=deploy,
                                                   dwconv_impl=dwconv_impl)
        self.lk_nonlinear = nn.ReLU()
        self.pw2 = ConvBN(dw_channels, in_channels, 1, norm_cfg=norm_cfg, deploy=deploy)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw1(self.prelkb_bn(x))
        x = self.lk_nonlinear(self.large_kernel(x))
        return self.pw2(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Folds every BN of the block into a conv, in place. Idempotent."""
        if self.deploy:
            return
        self.pw1.absorb_preceding_bn(self.prelkb_bn)
        self.prelkb_bn = nn.Identity()
        self.large_kernel.reparameterize()
        self.pw2.reparameterize()
        self.deploy = True


class ConvFFN(_ResidualBlock):
    """``preffn_bn`` -> ``pw1`` (1x1, C->rC) -> GELU -> ``pw2`` (1x1, rC->C) + residual.

    Args:
        in_channels (int): Block input/output channels C.
        hidden_channels (int): Hidden channels rC.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        norm_cfg (dict, optional): Config of the norm layers. Defaults to ``dict(type='BN')``.
        with_cp (bool): Use gradient checkpointing. Defaults to False.
        deploy (bool): Build the folded form directly. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict | None = None,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: dict | None = None) -> None:
        super().__init__(drop_path_rate, with_cp, deploy, init_cfg)
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        self.preffn_bn = nn.Identity() if deploy else build_norm_layer(norm_cfg, in_channels)[1]
        self.pw1 = ConvBN(in_channels, hidden_channels, 1, norm_cfg=norm_cfg, deploy=deploy)
        self.nonlinear = nn.GELU()
        self.pw2 = ConvBN(hidden_channels, in_channels, 1, norm_cfg=norm_cfg, deploy=deploy)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.nonlinear(self.pw1(self.preffn_bn(x)))
        return self.pw2(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Folds every BN of the block into a conv, in place. Idempotent."""
        if self.deploy:
            return
        self.pw1.absorb_preceding_bn(self.preffn_bn)
        self.preffn_bn = nn.Identity()
        self.pw2.reparameterize()
        self.deploy = True

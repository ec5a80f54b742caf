"""UniRepLKNet's dilated re-param block: a large depth-wise kernel trained beside dilated small
kernels, folded into one large kernel."""
from __future__ import annotations

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from mmreplk.ops import build_depthwise_conv
from .fusion import centre_pad, folded_depthwise_conv, fuse_conv_bn

#: The (kernel, dilation) branches beside each large kernel, as in the authors' release.
DILATED_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    7: ((5, 1), (3, 2), (3, 3)),
    5: ((3, 1), (3, 2)),
}


def dilate_kernel(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """The dense kernel equal to ``kernel`` applied with ``dilation``: zeros between the taps.

    Built by indexing, so it keeps the kernel's dtype and device (the authors' version convolves
    with a float32 identity and fails on float64 models).

    Args:
        kernel (torch.Tensor): Kernel of shape (O, I, k, k).
        dilation (int): Dilation rate r >= 1.

    Returns:
        torch.Tensor: Kernel of shape (O, I, r(k-1)+1, r(k-1)+1).
    """
    if dilation == 1:
        return kernel
    side = dilation * (kernel.shape[-1] - 1) + 1
    dense = kernel.new_zeros(*kernel.shape[:2], side, side)
    dense[:, :, ::dilation, ::dilation] = kernel
    return dense


class DilatedReparamBlock(BaseModule):
    """Depth-wise KxK conv + BN trained beside dilated depth-wise convs + BN, folded into one.

    Training form: ``lk_origin`` (KxK depth-wise conv through :mod:`mmreplk.ops`) and
    ``origin_bn``, plus a ``dil_conv_k{k}_{r}`` / ``dil_bn_k{k}_{r}`` pair per branch of
    :data:`DILATED_BRANCHES`; the output is the sum. Deploy form: ``lk_origin`` alone, biased.
    These are the state-dict names of the authors' release.

    The undilated branch (``dil_conv_k5_1``) runs through the measured op like the large kernel.
    The dilated ones are PyTorch's dilated depth-wise conv: the op takes no dilation, and a
    zero-filled dense kernel does (r(k-1)+1)^2 / k^2 times the work (13x for a 3x3 at r = 5),
    which measured 1.4-5x slower for the 3x3 branches of UniRepLKNet-T on a CPU.

    Args:
        channels (int): Number of channels.
        kernel_size (int): Large kernel side, a key of :data:`DILATED_BRANCHES`.
        norm_cfg (dict, optional): Config of the norm layers. Defaults to ``dict(type='BN')``.
        deploy (bool): Build the folded form directly. Defaults to False.
        dwconv_impl (str): Implementation of the large-kernel conv, see
            :func:`mmreplk.ops.depthwise_conv2d`. Defaults to 'auto'.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 norm_cfg: dict | None = None,
                 deploy: bool = False,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if kernel_size not in DILATED_BRANCHES:
            raise ValueError(f'the dilated re-param block has branches for kernel sizes '
                             f'{sorted(DILATED_BRANCHES)}, got {kernel_size}')
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        self.kernel_size = kernel_size
        self.branches = DILATED_BRANCHES[kernel_size]
        self.deploy = deploy
        self.lk_origin = build_depthwise_conv(channels, kernel_size, bias=deploy, impl=dwconv_impl)
        if deploy:
            return
        self.origin_bn = build_norm_layer(norm_cfg, channels)[1]
        for k, r in self.branches:
            conv = (build_depthwise_conv(channels, k, impl=dwconv_impl) if r == 1 else
                    nn.Conv2d(channels, channels, k, padding=r * (k - 1) // 2, dilation=r,
                              groups=channels, bias=False))
            self.add_module(f'dil_conv_k{k}_{r}', conv)
            self.add_module(f'dil_bn_k{k}_{r}', build_norm_layer(norm_cfg, channels)[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in self.branches:
            out = out + getattr(self, f'dil_bn_k{k}_{r}')(getattr(self, f'dil_conv_k{k}_{r}')(x))
        return out

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel (C, 1, K, K) and bias (C,) of the single conv equal to the training form."""
        if self.deploy:
            return self.lk_origin.weight, self.lk_origin.bias
        kernel, bias = fuse_conv_bn(self.lk_origin.weight, None, self.origin_bn)
        for k, r in self.branches:
            branch_kernel, branch_bias = fuse_conv_bn(
                getattr(self, f'dil_conv_k{k}_{r}').weight, None,
                getattr(self, f'dil_bn_k{k}_{r}'))
            kernel = kernel + centre_pad(dilate_kernel(branch_kernel, r), self.kernel_size)
            bias = bias + branch_bias
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Folds every branch and BN into a biased ``lk_origin``, in place. Idempotent."""
        if self.deploy:
            return
        self._set_kernel(*self.get_equivalent_kernel_bias())
        del self.origin_bn
        for k, r in self.branches:
            delattr(self, f'dil_conv_k{k}_{r}')
            delattr(self, f'dil_bn_k{k}_{r}')
        self.deploy = True

    @torch.no_grad()
    def absorb_following_bn(self, bn: nn.Module) -> None:
        """Folds a BN applied to this block's output into ``lk_origin``, after folding the block.

        Args:
            bn (nn.Module): A BatchNorm over the block's channels.
        """
        self.reparameterize()
        self._set_kernel(*fuse_conv_bn(self.lk_origin.weight, self.lk_origin.bias, bn))

    def _set_kernel(self, kernel: torch.Tensor, bias: torch.Tensor) -> None:
        self.lk_origin = folded_depthwise_conv(kernel, bias, self.lk_origin.impl)

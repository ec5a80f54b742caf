"""The re-parameterizable large-kernel depth-wise conv of RepLKNet."""
from __future__ import annotations

import torch
from mmengine.model import BaseModule

from mmreplk.ops import build_depthwise_conv
from .conv_bn import ConvBN
from .fusion import centre_pad, folded_depthwise_conv


class ReparamLargeKernelConv(BaseModule):
    """Depth-wise KxK conv trained with a parallel small kernel, folded into one KxK conv.

    Training form: ``lkb_origin`` (KxK depth-wise conv + BN) plus, if ``small_kernel`` is set,
    ``small_conv`` (small depth-wise conv + BN); the output is their sum. Deploy form: a single
    biased KxK depth-wise conv ``lkb_reparam``. Both use "same" padding.

    Args:
        channels (int): Number of channels.
        kernel_size (int): Large kernel side (odd).
        small_kernel (int, optional): Parallel small kernel side (odd, smaller than
            ``kernel_size``), or None for no small branch. Defaults to 5.
        norm_cfg (dict, optional): Config of the norm layers. Defaults to ``dict(type='BN')``.
        deploy (bool): Build the folded form directly. Defaults to False.
        dwconv_impl (str): Implementation of the depth-wise convs, see
            :func:`mmreplk.ops.depthwise_conv2d`. Defaults to 'auto'.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    #: Keys only the deploy form has (see :data:`mmreplk.utils.weights.DEPLOY_ONLY_ATTR`).
    deploy_only_keys = ('lkb_reparam.weight',)

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 small_kernel: int | None = 5,
                 norm_cfg: dict | None = None,
                 deploy: bool = False,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if kernel_size % 2 == 0:
            raise ValueError(f'large kernel size must be odd, got {kernel_size}')
        if small_kernel is not None and (small_kernel % 2 == 0 or small_kernel > kernel_size):
            raise ValueError(f'small_kernel must be odd and at most the large kernel ({kernel_size}), '
                             f'got {small_kernel}')
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        self.deploy = deploy
        if deploy:
            self.lkb_reparam = build_depthwise_conv(channels, kernel_size, bias=True,
                                                    impl=dwconv_impl)
        else:
            self.lkb_origin = ConvBN(channels, channels, kernel_size, groups=channels,
                                     norm_cfg=norm_cfg, dwconv_impl=dwconv_impl)
            if small_kernel is not None:
                self.small_conv = ConvBN(channels, channels, small_kernel, groups=channels,
                                         norm_cfg=norm_cfg, dwconv_impl=dwconv_impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.lkb_reparam(x)
        out = self.lkb_origin(x)
        if self.small_kernel is not None:
            out = out + self.small_conv(x)
        return out

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel (C, 1, K, K) and bias (C,) of the single conv equal to the training form."""
        if self.deploy:
            return self.lkb_reparam.weight, self.lkb_reparam.bias
        kernel, bias = self.lkb_origin.get_equivalent_kernel_bias()
        if self.small_kernel is not None:
            small_kernel, small_bias = self.small_conv.get_equivalent_kernel_bias()
            kernel = kernel + centre_pad(small_kernel, self.kernel_size)
            bias = bias + small_bias
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replaces the training branches by ``lkb_reparam`` in place. Idempotent."""
        if self.deploy:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        self.lkb_reparam = folded_depthwise_conv(kernel, bias, self.lkb_origin.conv.impl)
        del self.lkb_origin
        if self.small_kernel is not None:
            del self.small_conv
        self.deploy = True

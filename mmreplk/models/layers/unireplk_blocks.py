"""The UniRepLKNet block and the small layers it is made of (SE, GRN, channels-first LayerNorm)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import nn

from mmreplk.ops import build_depthwise_conv
from .dilated_reparam import DilatedReparamBlock
from .fusion import folded_depthwise_conv, fuse_conv_bn
from .replk_blocks import _ResidualBlock

#: Kernel sizes a block runs as a plain depth-wise conv; larger ones get dilated branches.
PLAIN_KERNEL_SIZES = (3, 5)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) tensor.

    Args:
        channels (int): Number of channels C.
        eps (float): Added to the variance. Defaults to 1e-6.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ToChannelsLast(nn.Module):
    """(N, C, H, W) -> (N, H, W, C), so ``nn.Linear`` acts as a 1x1 conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class ToChannelsFirst(nn.Module):
    """(N, H, W, C) -> (N, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global response normalization (ConvNeXt V2) on an (N, H, W, C) tensor.

    ``(gamma * n + 1) * x + beta`` where ``n`` is each channel's spatial L2 norm divided by the
    mean of those norms over the channels.

    Args:
        channels (int): Number of channels C.
        use_bias (bool): Whether ``beta`` exists (the deploy form moves it into the next
            linear layer). Defaults to True.
    """

    def __init__(self, channels: int, use_bias: bool = True) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels)) if use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        out = (self.gamma * (norms / (norms.mean(dim=-1, keepdim=True) + 1e-6)) + 1) * x
        return out if self.beta is None else out + self.beta


class SEBlock(nn.Module):
    """Squeeze-and-excitation: channels scaled by ``sigmoid(up(relu(down(mean(x)))))``.

    Args:
        channels (int): Number of channels.
        hidden_channels (int): Width of the squeeze.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, hidden_channels, 1)
        self.nonlinear = nn.ReLU(inplace=True)
        self.up = nn.Conv2d(hidden_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.up(self.nonlinear(self.down(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(scale)


class UniRepLKNetBlock(_ResidualBlock):
    """``dwconv`` -> ``norm`` (BN) -> ``se`` -> ``pwconv1`` (Linear, 4x) -> ``act`` (GELU, GRN)
    -> ``pwconv2`` (Linear, BN) -> layer scale ``gamma`` -> drop path, plus the residual.

    ``dwconv`` is a :class:`DilatedReparamBlock` for kernels of 7 and more, a plain depth-wise
    conv for 3 and 5. The deploy form folds the dilated branches and ``norm`` into ``dwconv``,
    and GRN's ``beta``, the BN and ``gamma`` into a biased ``pwconv2`` linear layer. Attribute
    names are those of the authors' release.

    Args:
        channels (int): Block input/output channels C.
        kernel_size (int): Depth-wise kernel side: 3, 5, or a key of
            :data:`~mmreplk.models.layers.dilated_reparam.DILATED_BRANCHES`.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float, optional): Initial layer scale; None or 0 builds none.
            Defaults to 1e-6.
        ffn_ratio (float): Hidden width of the linear layers over C. Defaults to 4.
        norm_cfg (dict, optional): Config of the BN layers. Defaults to ``dict(type='BN')``.
        with_cp (bool): Use gradient checkpointing. Defaults to False.
        deploy (bool): Build the folded form directly. Defaults to False.
        dwconv_impl (str): Implementation of the depth-wise convs, see
            :func:`mmreplk.ops.depthwise_conv2d`. Defaults to 'auto'.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    #: Only the folded form's second linear layer has a bias.
    deploy_only_keys = ('pwconv2.0.bias',)

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float | None = 1e-6,
                 ffn_ratio: float = 4,
                 norm_cfg: dict | None = None,
                 with_cp: bool = False,
                 deploy: bool = False,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | None = None) -> None:
        super().__init__(drop_path_rate, with_cp, deploy, init_cfg)
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        if kernel_size in PLAIN_KERNEL_SIZES:
            self.dwconv = build_depthwise_conv(channels, kernel_size, bias=deploy,
                                               impl=dwconv_impl)
        else:
            self.dwconv = DilatedReparamBlock(channels, kernel_size, norm_cfg, deploy,
                                              dwconv_impl)
        self.norm = nn.Identity() if deploy else build_norm_layer(norm_cfg, channels)[1]
        self.se = SEBlock(channels, channels // 4)
        hidden = int(channels * ffn_ratio)
        self.pwconv1 = nn.Sequential(ToChannelsLast(), nn.Linear(channels, hidden))
        self.act = nn.Sequential(nn.GELU(), GRN(hidden, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(hidden, channels), ToChannelsFirst())
        else:
            self.pwconv2 = nn.Sequential(nn.Linear(hidden, channels, bias=False),
                                         ToChannelsFirst(),
                                         build_norm_layer(norm_cfg, channels)[1])
        self.gamma = (nn.Parameter(torch.full((channels, ), float(layer_scale_init_value)))
                      if not deploy and layer_scale_init_value else None)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return y

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Folds the branches, every BN, GRN's bias and the layer scale away, in place.
        Idempotent."""
        if self.deploy:
            return
        if isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.absorb_following_bn(self.norm)
        else:
            self.dwconv = folded_depthwise_conv(
                *fuse_conv_bn(self.dwconv.weight, self.dwconv.bias, self.norm), self.dwconv.impl)
        self.norm = nn.Identity()

        linear, bn, grn = self.pwconv2[0], self.pwconv2[2], self.act[1]
        # gamma * bn(W (grn(x) + beta)) = W' grn(x) + b': beta enters as the bias W @ beta.
        weight, bias = fuse_conv_bn(linear.weight[:, :, None, None],
                                    linear.weight @ grn.beta.flatten(), bn)
        weight = weight[:, :, 0, 0]
        if self.gamma is not None:
            weight = weight * self.gamma[:, None]
            bias = bias * self.gamma
        folded = nn.Linear(linear.in_features, linear.out_features).to(weight.device, weight.dtype)
        folded.weight.copy_(weight)
        folded.bias.copy_(bias)
        self.pwconv2 = nn.Sequential(folded, ToChannelsFirst())
        grn.beta = None
        self.gamma = None
        self.deploy = True

"""RepLKNet backbone (Ding et al., "Scaling Up Your Kernels to 31x31", CVPR 2022)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

from mmreplk.models.layers import ConvBN, ConvFFN, RepLKBlock
from .base import LargeKernelBackbone, linear_rates
from .replknet_weights import ARCH_KEYS, ARCH_SETTINGS, load_backbone_weights

_FROM_ARCH = object()


class RepLKNetStage(BaseModule):
    """A stage: ``blocks`` alternating RepLKBlock / ConvFFN, and the output ``norm``.

    Args:
        channels (int): Stage width C.
        num_blocks (int): Number of RepLKBlock + ConvFFN pairs.
        kernel_size (int): Large kernel side.
        small_kernel (int, optional): Parallel small kernel side, or None.
        dw_ratio (float): Large-kernel conv width D = int(C * dw_ratio).
        ffn_ratio (float): ConvFFN hidden width = int(C * ffn_ratio).
        drop_path_rates (Sequence[float]): One stochastic-depth rate per block pair.
        norm_cfg (dict): Config of the norm layers.
        with_cp (bool): Use gradient checkpointing in every block.
        norm_intermediate_features (bool): Give the stage output a norm layer; otherwise
            ``norm`` is an identity with no parameters.
        deploy (bool): Build the folded form directly.
        dwconv_impl (str): Implementation of the depth-wise convs, see
            :func:`mmreplk.ops.depthwise_conv2d`. Defaults to 'auto'.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 num_blocks: int,
                 kernel_size: int,
                 small_kernel: int | None,
                 dw_ratio: float,
                 ffn_ratio: float,
                 drop_path_rates: Sequence[float],
                 norm_cfg: dict,
                 with_cp: bool,
                 norm_intermediate_features: bool,
                 deploy: bool,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        blocks = []
        for i in range(num_blocks):
            blocks.append(RepLKBlock(channels, int(channels * dw_ratio), kernel_size, small_kernel,
                                     drop_path_rates[i], norm_cfg, with_cp, deploy,
                                     dwconv_impl=dwconv_impl))
            blocks.append(ConvFFN(channels, int(channels * ffn_ratio), drop_path_rates[i], norm_cfg,
                                  with_cp, deploy))
        self.blocks = nn.ModuleList(blocks)
        self.norm = (build_norm_layer(norm_cfg, channels)[1]
                     if norm_intermediate_features else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@MODELS.register_module()
class RepLKNet(LargeKernelBackbone):
    """RepLKNet backbone with a multi-scale (FPN-ready) output.

    The state-dict names are those of the authors' release, so their ImageNet checkpoints load
    with ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` (classifier keys are dropped and
    reported). ``switch_to_deploy()`` folds every BN and small kernel into single convs.

    Args:
        arch (str | dict): '31B', '31L', 'XL', or a dict with the keys ``large_kernel_sizes``,
            ``layers``, ``channels``, ``small_kernel`` (int or None), ``dw_ratio`` and
            ``ffn_ratio``. Defaults to '31B'.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned (negative indices
            count from the end). Defaults to (0, 1, 2, 3).
        drop_path_rate (float): Stochastic depth rate of the last block pair; rates grow
            linearly from 0. Defaults to 0.3.
        small_kernel (int, optional): Overrides the arch's parallel small kernel; None removes
            it. Defaults to the arch's value.
        dw_ratio (float, optional): Overrides the arch's large-kernel width ratio. Defaults to
            the arch's value.
        ffn_ratio (float, optional): Overrides the arch's ConvFFN ratio. Defaults to the arch's
            value.
        norm_cfg (dict): Config of every norm layer. Defaults to ``dict(type='BN')``.
        with_cp (bool): Use gradient checkpointing (saves memory, same results).
            Defaults to False.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k > 0 the stem and the first k
            stages with the transitions between them (no gradients, BN in eval mode).
            Defaults to -1.
        norm_eval (bool): Keep every BN in eval mode during training. Defaults to False.
        norm_intermediate_features (bool): Add a norm layer to every stage output (used by
            RepLKNet-XL downstream). Defaults to False.
        deploy (bool): Build the folded (re-parameterized) structure. Defaults to False.
        dwconv_impl (str): How the depth-wise convs run: 'auto' times the available paths per
            pass on first use and keeps the fastest; a name from
            :func:`mmreplk.ops.implementations` ('nchw', 'channels_last', 'cpu', 'triton', ...)
            forces one, also after folding. Defaults to 'auto'.
        init_cfg (dict | list[dict], optional): Initialization config; ``type='Pretrained'``
            loads a released or converted checkpoint. Defaults to None.

    Example:
        >>> import torch
        >>> from mmreplk.models import RepLKNet
        >>> arch = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 1, 1],
        ...             channels=[8, 16, 32, 64], small_kernel=5, dw_ratio=1, ffn_ratio=4)
        >>> model = RepLKNet(arch=arch).eval()
        >>> for out in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(out.shape))
        (1, 8, 16, 16)
        (1, 16, 8, 8)
        (1, 32, 4, 4)
        (1, 64, 2, 2)
    """

    arch_settings = ARCH_SETTINGS
    arch_keys = ARCH_KEYS

    def __init__(self,
                 arch: str | dict = '31B',
                 in_channels: int = 3,
                 out_indices: int | Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.3,
                 small_kernel=_FROM_ARCH,
                 dw_ratio: float | None = None,
                 ffn_ratio: float | None = None,
                 norm_cfg: dict | None = None,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_intermediate_features: bool = False,
                 deploy: bool = False,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        settings = self._resolve_arch(arch)
        if small_kernel is not _FROM_ARCH:
            settings['small_kernel'] = small_kernel
        if dw_ratio is not None:
            settings['dw_ratio'] = dw_ratio
        if ffn_ratio is not None:
            settings['ffn_ratio'] = ffn_ratio
        _check_arch(settings)
        norm_cfg = dict(type='BN') if norm_cfg is None else dict(norm_cfg)

        self.arch_setting = settings
        self.channels = list(settings['channels'])
        self._set_common_args(len(self.channels), out_indices, norm_cfg, drop_path_rate,
                              frozen_stages, norm_eval, with_cp, deploy, dwconv_impl)
        self.norm_intermediate_features = norm_intermediate_features

        c0 = self.channels[0]
        relu = dict(type='ReLU')
        conv_kw = dict(norm_cfg=norm_cfg, act_cfg=relu, deploy=deploy, dwconv_impl=dwconv_impl)
        self.stem = nn.ModuleList([
            ConvBN(in_channels, c0, 3, stride=2, **conv_kw),
            ConvBN(c0, c0, 3, groups=c0, **conv_kw),
            ConvBN(c0, c0, 1, **conv_kw),
            ConvBN(c0, c0, 3, stride=2, groups=c0, **conv_kw),
        ])

        layers = settings['layers']
        rates = linear_rates(drop_path_rate, sum(layers))
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i in range(self.num_stages):
            start = sum(layers[:i])
            self.stages.append(
                RepLKNetStage(self.channels[i], layers[i], settings['large_kernel_sizes'][i],
                              settings['small_kernel'], settings['dw_ratio'],
                              settings['ffn_ratio'], rates[start:start + layers[i]], norm_cfg,
                              with_cp, norm_intermediate_features, deploy,
                              dwconv_impl=dwconv_impl))
            if i < self.num_stages - 1:
                c_in, c_out = self.channels[i], self.channels[i + 1]
                self.transitions.append(nn.Sequential(
                    ConvBN(c_in, c_out, 1, **conv_kw),
                    ConvBN(c_out, c_out, 3, stride=2, groups=c_out, **conv_kw)))
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for layer in self.stem:
            x = layer(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(stage.norm(x).contiguous())
            if i < self.num_stages - 1:
                x = self.transitions[i](x)
        return tuple(outs)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.stem]
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if i > 0:
                modules.append(self.transitions[i - 1])
        return modules

    def _load_pretrained(self, checkpoint: str, prefix: str | None):
        return load_backbone_weights(self, checkpoint, prefix=prefix)


def _check_arch(settings: dict) -> None:
    lengths = {key: len(settings[key]) for key in ('large_kernel_sizes', 'layers', 'channels')}
    if len(set(lengths.values())) != 1:
        raise ValueError(f'RepLKNet arch lists must have one entry per stage, got lengths {lengths}')
    for k in settings['large_kernel_sizes']:
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f'large_kernel_sizes must be odd positive ints, got {settings["large_kernel_sizes"]}')
    small = settings['small_kernel']
    if small is not None:
        if not isinstance(small, int) or small < 1 or small % 2 == 0:
            raise ValueError(f'small_kernel must be an odd positive int or None, got {small}')
        if small > min(settings['large_kernel_sizes']):
            raise ValueError(f'small_kernel ({small}) must not exceed the smallest large kernel '
                             f'({min(settings["large_kernel_sizes"])})')
    for key in ('layers', 'channels'):
        if any(not isinstance(v, int) or v < 1 for v in settings[key]):
            raise ValueError(f'{key} must be positive ints, got {settings[key]}')
    for key in ('dw_ratio', 'ffn_ratio'):
        if settings[key] <= 0:
            raise ValueError(f'{key} must be positive, got {settings[key]}')


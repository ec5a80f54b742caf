"""UniRepLKNet backbone (Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet",
CVPR 2024)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from mmengine.registry import MODELS
from torch import nn

from mmreplk.models.layers import DILATED_BRANCHES, ChannelsFirstLayerNorm, UniRepLKNetBlock
from mmreplk.models.layers.unireplk_blocks import PLAIN_KERNEL_SIZES
from .base import LargeKernelBackbone, linear_rates
from mmreplk.utils import LoadReport
from .unireplknet_keys import load_unireplknet_weights, match_unireplknet_state_dict

ARCH_KEYS = ('depths', 'dims', 'kernel_sizes')

_AFP_KERNELS = ((3, ) * 2, (13, ) * 2, (13, ) * 6, (13, ) * 2)
_N_KERNELS = ((3, ) * 2, (13, ) * 2, (13, ) * 8, (13, ) * 2)
_T_KERNELS = ((3, ) * 3, (13, ) * 3, (13, 3) * 9, (13, ) * 3)
_SBLXL_KERNELS = ((3, ) * 3, (13, ) * 3, (13, 3, 3) * 9, (13, ) * 3)


def _setting(depths: tuple, width: int, kernel_sizes: tuple) -> dict:
    return dict(depths=depths, dims=(width, 2 * width, 4 * width, 8 * width),
                kernel_sizes=kernel_sizes)


@MODELS.register_module()
class UniRepLKNet(LargeKernelBackbone):
    """UniRepLKNet backbone with a multi-scale (FPN-ready) output.

    The state-dict names are those of the authors' release, so their ImageNet checkpoints (1K,
    22K, 22K->1K) load with ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` (the
    classifier's ``norm.*`` and ``head.*`` are dropped and reported) and the backbone part of
    their mmseg / mmdet checkpoints (``backbone.*``) loads as it is. Every output passes a
    channels-first LayerNorm ``norm{i}``, as in the authors' downstream models.
    ``switch_to_deploy()`` (or :func:`mmreplk.reparameterize`) folds the dilated branches, every
    BN, GRN's bias and the layer scales away.

    Args:
        arch (str | dict): 'A', 'F', 'P', 'N', 'T', 'S', 'B', 'L', 'XL', or a dict with the keys
            ``depths`` (blocks per stage), ``dims`` (channels per stage) and ``kernel_sizes``
            (one sequence per stage, one depth-wise kernel side per block: 3, 5, or 7..17 odd
            for a dilated re-param block). Defaults to 'T'.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned (negative indices
            count from the end). Defaults to (0, 1, 2, 3).
        drop_path_rate (float): Stochastic depth rate of the last block; rates grow linearly
            from 0. Defaults to 0.
        layer_scale_init_value (float, optional): Initial layer scale of every block; None or 0
            builds none. Defaults to 1e-6.
        norm_cfg (dict, optional): Config of the BN layers inside the blocks (the stem, the
            downsampling layers and the outputs use LayerNorm, as the authors do). Defaults to
            ``dict(type='BN')``, or SyncBN with ``use_sync_bn``.
        use_sync_bn (bool): The authors' switch: ``norm_cfg=dict(type='SyncBN')``. Defaults to
            False.
        with_cp (bool): Use gradient checkpointing (saves memory, same results).
            Defaults to False.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k > 0 the stem and the first k
            stages with the downsampling layers and output norms between them (no gradients,
            BN in eval mode). Defaults to -1.
        norm_eval (bool): Keep every BN in eval mode during training. Defaults to False.
        deploy (bool): Build the folded (re-parameterized) structure. Defaults to False.
        dwconv_impl (str): How the depth-wise convs run: 'auto' measures the available paths
            per pass on first use and keeps the fastest; a name from
            :func:`mmreplk.ops.implementations` forces one, also after folding. The dilated
            (r > 1) branches of the training form run as PyTorch's dilated conv.
            Defaults to 'auto'.
        init_cfg (dict | list[dict], optional): Initialization config; ``type='Pretrained'``
            loads a released, converted or downstream checkpoint. Defaults to a truncated
            normal (std 0.02) on every conv and linear layer, as the authors initialize.

    Example:
        >>> import torch
        >>> from mmreplk.models import UniRepLKNet
        >>> arch = dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64],
        ...             kernel_sizes=[[3], [13], [13, 3], [7]])
        >>> model = UniRepLKNet(arch=arch).eval()
        >>> for out in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(out.shape))
        (1, 8, 16, 16)
        (1, 16, 8, 8)
        (1, 32, 4, 4)
        (1, 64, 2, 2)
    """

    arch_settings = {
        'A': dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), kernel_sizes=_AFP_KERNELS),
        'F': dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), kernel_sizes=_AFP_KERNELS),
        'P': dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512), kernel_sizes=_AFP_KERNELS),
        'N': dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), kernel_sizes=_N_KERNELS),
        'T': dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640), kernel_sizes=_T_KERNELS),
        'S': _setting((3, 3, 27, 3), 96, _SBLXL_KERNELS),
        'B': _setting((3, 3, 27, 3), 128, _SBLXL_KERNELS),
        'L': _setting((3, 3, 27, 3), 192, _SBLXL_KERNELS),
        'XL': _setting((3, 3, 27, 3), 256, _SBLXL_KERNELS),
    }
    arch_keys = ARCH_KEYS

    def __init__(self,
                 arch: str | dict = 'T',
                 in_channels: int = 3,
                 out_indices: int | Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float | None = 1e-6,
                 norm_cfg: dict | None = None,
                 use_sync_bn: bool = False,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 deploy: bool = False,
                 dwconv_impl: str = 'auto',
                 init_cfg: dict | list[dict] | None = None) -> None:
        if init_cfg is None:
            init_cfg = dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.)
        super().__init__(init_cfg=init_cfg)
        settings = self._resolve_arch(arch)
        norm_cfg = _resolve_norm_cfg(norm_cfg, use_sync_bn)

        self.arch_setting = settings
        self.dims = list(settings['dims'])
        self._set_common_args(len(self.dims), out_indices, norm_cfg, drop_path_rate,
                              frozen_stages, norm_eval, with_cp, deploy, dwconv_impl)

        dims = self.dims
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_channels, dims[0] // 2, 3, stride=2, padding=1),
            ChannelsFirstLayerNorm(dims[0] // 2),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1),
            ChannelsFirstLayerNorm(dims[0]))])
        for i in range(self.num_stages - 1):
            self.downsample_layers.append(nn.Sequential(
                nn.Conv2d(dims[i], dims[i + 1], 3, stride=2, padding=1),
                ChannelsFirstLayerNorm(dims[i + 1])))

        depths = settings['depths']
        rates = linear_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.stages.append(nn.Sequential(*[
                UniRepLKNetBlock(dims[i], settings['kernel_sizes'][i][j], rates[start + j],
                                 layer_scale_init_value, norm_cfg=norm_cfg, with_cp=with_cp,
                                 deploy=deploy, dwconv_impl=dwconv_impl)
                for j in range(depth)]))
        for i in self.out_indices:
            self.add_module(f'norm{i}', ChannelsFirstLayerNorm(dims[i]))
        self._freeze_stages()

    @classmethod
    def _custom_arch(cls, arch: dict) -> dict:
        settings = dict(depths=tuple(arch['depths']), dims=tuple(arch['dims']),
                        kernel_sizes=tuple(tuple(ks) for ks in arch['kernel_sizes']))
        _check_arch(settings)
        return settings

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i in range(self.num_stages):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
        return tuple(outs)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.downsample_layers[0]]
        for i in range(self.frozen_stages):
            modules += [self.downsample_layers[i], self.stages[i]]
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def _load_pretrained(self, checkpoint: str, prefix: str | None):
        return load_unireplknet_weights(self, checkpoint, prefix=prefix)

    def load_complete(self, state_dict: Mapping[str, torch.Tensor], source: str) -> LoadReport:
        # ImageNet files lack the output norms that downstream models add; they keep their
        # initial values, as when downstream training starts.
        return match_unireplknet_state_dict(self, state_dict, source)


def _resolve_norm_cfg(norm_cfg: dict | None, use_sync_bn: bool) -> dict:
    if norm_cfg is None:
        return dict(type='SyncBN' if use_sync_bn else 'BN')
    norm_cfg = dict(norm_cfg)
    if use_sync_bn and norm_cfg.get('type') != 'SyncBN':
        raise ValueError(f'use_sync_bn=True contradicts norm_cfg={norm_cfg}; pass one of them')
    return norm_cfg


def _check_arch(settings: dict) -> None:
    depths, dims, kernel_sizes = settings['depths'], settings['dims'], settings['kernel_sizes']
    if not len(depths) == len(dims) == len(kernel_sizes) or not depths:
        raise ValueError(f'UniRepLKNet arch lists must have one entry per stage, got depths '
                         f'{depths}, dims {dims}, kernel_sizes {kernel_sizes}')
    for key in ('depths', 'dims'):
        if any(not isinstance(v, int) or v < 1 for v in settings[key]):
            raise ValueError(f'{key} must be positive ints, got {settings[key]}')
    for i, (depth, sizes) in enumerate(zip(depths, kernel_sizes)):
        if len(sizes) != depth:
            raise ValueError(f'kernel_sizes[{i}] names {len(sizes)} kernels for a stage of '
                             f'{depth} blocks: give one kernel size per block')
    allowed = sorted(set(PLAIN_KERNEL_SIZES) | set(DILATED_BRANCHES))
    wrong = sorted({k for sizes in kernel_sizes for k in sizes if k not in allowed})
    if wrong:
        raise ValueError(f'unsupported UniRepLKNet kernel sizes {wrong}; each must be one of '
                         f'{allowed}')

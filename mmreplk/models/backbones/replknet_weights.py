"""What RepLKNet's weights say about it: the arch table, the structure read off a state dict,
and the key mapping of released, mmpretrain-converted and downstream files.

The one place that knows RepLKNet's key names; :class:`~.replknet.RepLKNet` and
:mod:`mmreplk.deployment` ask here, and the model-agnostic loading underneath is
:func:`mmreplk.utils.load_weights`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from mmreplk.utils import (CheckpointMismatchError, LoadReport, extract_backbone,
                           load_checkpoint_file, load_weights, unwrap_state_dict)
from ..reparameterize import is_folded

#: Keys of an arch dict.
ARCH_KEYS = ('large_kernel_sizes', 'layers', 'channels', 'small_kernel', 'dw_ratio', 'ffn_ratio')

#: The paper's variants.
ARCH_SETTINGS = {
    '31B': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                channels=[128, 256, 512, 1024], small_kernel=5, dw_ratio=1, ffn_ratio=4),
    '31L': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                channels=[192, 384, 768, 1536], small_kernel=5, dw_ratio=1, ffn_ratio=4),
    'XL': dict(large_kernel_sizes=[27, 27, 27, 13], layers=[2, 2, 18, 2],
               channels=[256, 512, 1024, 2048], small_kernel=None, dw_ratio=1.5, ffn_ratio=4),
}

#: Key starts of the backbone's top-level modules.
BACKBONE_ROOTS = ('stem.', 'stages.', 'transitions.')
#: Prefixes of released files: the authors' DDP ``module.``, mmpretrain's ``backbone.``.
RELEASE_PREFIXES = ('module.', 'backbone.')

_STEM_KEY = 'stem.0.conv.weight'
_BLOCK_KEY = re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.')
_STAGE_NORM_KEY = re.compile(r'^stages\.\d+\.norm\.')


def to_backbone_state_dict(state_dict: Mapping[str, torch.Tensor],
                           prefix: str | None = None) -> tuple[dict, list[str]]:
    """Maps a released, mmpretrain-converted or downstream state dict to backbone keys.

    Strips ``module.``/``backbone.`` (or the given ``prefix``) and drops everything that is not
    part of the backbone (classifier ``norm.*``/``head.*``, necks, decode heads).

    Args:
        state_dict (Mapping[str, torch.Tensor]): Source weights.
        prefix (str, optional): Only keep keys under this prefix, with it removed.
            Defaults to None (strip the usual prefixes).

    Returns:
        tuple[dict, list[str]]: Backbone state dict, and the source keys that were dropped.
    """
    return extract_backbone(state_dict, BACKBONE_ROOTS, RELEASE_PREFIXES, prefix)


def read_backbone_state_dict(filename: str | os.PathLike,
                             prefix: str | None = None) -> tuple[dict, list[str]]:
    """Reads a file under the trust policy and maps it with :func:`to_backbone_state_dict`.

    Args:
        filename (str | os.PathLike): Released, converted or downstream checkpoint.
        prefix (str, optional): See :func:`to_backbone_state_dict`. Defaults to None.

    Returns:
        tuple[dict, list[str]]: Backbone state dict, and the source keys that were dropped.
    """
    return to_backbone_state_dict(unwrap_state_dict(load_checkpoint_file(filename)), prefix)


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Reads the RepLKNet structure off the tensor shapes of a backbone state dict.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Backbone keys (as returned by
            :func:`to_backbone_state_dict`).

    Returns:
        tuple[dict, dict]: The arch dict (``large_kernel_sizes``, ``layers``, ``channels``,
        ``small_kernel``, ``dw_ratio``, ``ffn_ratio``) and the other constructor arguments it
        implies (``in_channels``, ``deploy``, ``norm_intermediate_features``).

    Raises:
        CheckpointMismatchError: The weights are not (all of) a RepLKNet.
    """
    if _STEM_KEY not in state_dict:
        raise CheckpointMismatchError(
            f'not a RepLKNet backbone: no {_STEM_KEY} (is it a RepLKNet checkpoint? keys '
            'start with ' + ', '.join(sorted(state_dict)[:3]) + ')')
    deploy = is_folded(state_dict)
    num_blocks: dict[int, int] = {}
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, block = int(match[1]), int(match[2])
            num_blocks[stage] = max(num_blocks.get(stage, 0), block + 1)
    if not num_blocks or sorted(num_blocks) != list(range(len(num_blocks))):
        raise CheckpointMismatchError(f'incomplete RepLKNet checkpoint: found blocks for '
                                      f'stages {sorted(num_blocks)}')
    kernel_name = 'lkb_reparam.weight' if deploy else 'lkb_origin.conv.weight'
    channels, kernels, dw_ratios, ffn_ratios = [], [], [], []
    for stage in range(len(num_blocks)):
        prefix = f'stages.{stage}.blocks.'
        pw2 = _get(state_dict, prefix + '0.pw2.conv.weight')
        ffn = _get(state_dict, prefix + '1.pw1.conv.weight')
        channels.append(pw2.shape[0])
        dw_ratios.append(pw2.shape[1] / pw2.shape[0])
        ffn_ratios.append(ffn.shape[0] / ffn.shape[1])
        kernels.append(_get(state_dict, f'{prefix}0.large_kernel.{kernel_name}').shape[-1])
    small = state_dict.get('stages.0.blocks.0.large_kernel.small_conv.conv.weight')
    arch = dict(large_kernel_sizes=kernels,
                layers=[num_blocks[i] // 2 for i in range(len(num_blocks))],
                channels=channels,
                small_kernel=None if small is None else small.shape[-1],
                dw_ratio=_single_ratio(dw_ratios, 'dw_ratio'),
                ffn_ratio=_single_ratio(ffn_ratios, 'ffn_ratio'))
    extra = dict(in_channels=state_dict[_STEM_KEY].shape[1], deploy=deploy,
                 norm_intermediate_features=any(map(_STAGE_NORM_KEY.match, state_dict)))
    return arch, extra


def arch_name(arch: Mapping) -> str:
    """'31B', '31L' or 'XL' when ``arch`` equals a named setting, else 'custom'.

    A deploy-form file has no small kernel to read, so the small kernel is ignored when
    ``arch['small_kernel']`` is None.
    """
    for name, setting in ARCH_SETTINGS.items():
        keys = [k for k in setting if not (k == 'small_kernel' and arch['small_kernel'] is None)]
        if all(arch[k] == setting[k] for k in keys):
            return name
    return 'custom'


def describe_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Names the RepLKNet a backbone state dict was trained as, for error messages.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Backbone keys.

    Returns:
        str: E.g. 'RepLKNet-31B' or 'a custom arch with stem width 16 (...)'.
    """
    stem = state_dict.get(_STEM_KEY)
    if stem is None:
        return f'not a RepLKNet checkpoint (no {_STEM_KEY})'
    try:
        arch, _ = infer_arch(state_dict)
    except CheckpointMismatchError as err:
        return f'a RepLKNet with stem width {stem.shape[0]} ({err})'
    name = arch_name(arch)
    if name != 'custom':
        return f'RepLKNet-{name}'
    return f'a custom arch with stem width {stem.shape[0]} ({arch})'


def match_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     filename: str = '<state dict>') -> LoadReport:
    """Loads backbone weights into a RepLKNet in ``'partial'`` mode, naming a wrong arch.

    Args:
        model (nn.Module): A RepLKNet backbone.
        state_dict (Mapping[str, torch.Tensor]): Weights with backbone key names.
        filename (str): Where they came from, for messages.

    Returns:
        LoadReport: Loaded, missing and unexpected keys.
    """
    setting = getattr(model, 'arch_setting', {})
    own = (f'the model has channels {setting.get("channels")} and kernels '
           f'{setting.get("large_kernel_sizes")}; ' if setting else '')
    return load_weights(model, state_dict, 'partial', filename,
                        hint=f'{own}the file looks like {describe_arch(state_dict)}')


def load_backbone_weights(model: nn.Module, filename: str | os.PathLike,
                          prefix: str | None = None) -> LoadReport:
    """Loads a released ImageNet, mmpretrain-converted or downstream checkpoint into a backbone.

    Args:
        model (nn.Module): A RepLKNet backbone.
        filename (str | os.PathLike): Checkpoint path.
        prefix (str, optional): See :func:`to_backbone_state_dict`. Defaults to None.

    Returns:
        LoadReport: What was loaded, missing and dropped.
    """
    filename = os.fspath(filename)
    state_dict, dropped = read_backbone_state_dict(filename, prefix)
    report = match_state_dict(model, state_dict, filename)
    report.dropped = dropped + report.dropped
    return report


def _get(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise CheckpointMismatchError(f'incomplete RepLKNet checkpoint: {key} is missing')
    return state_dict[key]


def _single_ratio(ratios: list[float], name: str) -> float:
    if len(set(ratios)) != 1:
        raise CheckpointMismatchError(f'stages use different {name} values {ratios}; RepLKNet '
                                      'has one')
    ratio = ratios[0]
    return int(ratio) if ratio == int(ratio) else ratio

"""UniRepLKNet checkpoints: which keys are the backbone's, which arch a file holds, and the
backbone's ``Pretrained`` loader on top of :func:`~mmreplk.utils.load_weights`.

The authors' files need no renaming: the ImageNet classifiers hold the backbone under its own
names plus ``norm.*`` / ``head.*``, their mmseg 0.x / mmdet 2.x checkpoints under
``backbone.``, with the per-output norms ``norm0`` .. ``norm3``.
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
from .replknet_weights import RELEASE_PREFIXES

_BLOCK_KEY = re.compile(r'^stages\.(\d+)\.(\d+)\.')
_OUTPUT_NORM_KEY = re.compile(r'^norm(\d+)\.')
_DOWNSAMPLE_KEY = re.compile(r'(^|\.)downsample_layers\.\d+\.')
_MAX_STAGES = 8


def unireplknet_roots(num_stages: int = _MAX_STAGES) -> tuple[str, ...]:
    """Key starts of a UniRepLKNet backbone: not ``norm.``/``head.`` of the classifier.

    Args:
        num_stages (int): Stages whose output norms count. Defaults to 8 (any arch).

    Returns:
        tuple[str, ...]: Roots for :func:`~mmreplk.utils.extract_backbone`.
    """
    return ('downsample_layers.', 'stages.') + tuple(f'norm{i}.' for i in range(num_stages))


def is_unireplknet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether weights (with or without ``backbone.``/``module.`` prefixes) hold a UniRepLKNet
    rather than a RepLKNet."""
    return any(_DOWNSAMPLE_KEY.search(key) for key in state_dict)


def infer_unireplknet_arch(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Reads the UniRepLKNet structure off the tensor shapes of a backbone state dict.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Backbone keys (prefixes removed).

    Returns:
        tuple[dict, dict]: The arch dict (``depths``, ``dims``, ``kernel_sizes``) and the other
        constructor arguments it implies (``in_channels``, ``deploy``,
        ``layer_scale_init_value``, ``out_indices``).

    Raises:
        CheckpointMismatchError: The weights are not a (complete) UniRepLKNet.
    """
    stem = state_dict.get('downsample_layers.0.0.weight')
    if stem is None:
        raise CheckpointMismatchError(
            'not a UniRepLKNet backbone: no downsample_layers.0.0.weight (keys start with '
            + ', '.join(sorted(state_dict)[:3]) + ')')
    depths: dict[int, int] = {}
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, block = int(match[1]), int(match[2])
            depths[stage] = max(depths.get(stage, 0), block + 1)
    if not depths or sorted(depths) != list(range(len(depths))):
        raise CheckpointMismatchError(f'incomplete UniRepLKNet checkpoint: found blocks for '
                                      f'stages {sorted(depths)}')
    dims, kernel_sizes = [], []
    for stage in range(len(depths)):
        down = 'downsample_layers.0.3.weight' if stage == 0 else \
            f'downsample_layers.{stage}.0.weight'
        dims.append(_get(state_dict, down).shape[0])
        kernel_sizes.append(tuple(
            _kernel(state_dict, f'stages.{stage}.{block}.dwconv.')
            for block in range(depths[stage])))
    deploy = is_folded(state_dict)
    arch = dict(depths=tuple(depths[i] for i in range(len(depths))), dims=tuple(dims),
                kernel_sizes=tuple(kernel_sizes))
    gamma = state_dict.get('stages.0.0.gamma')
    out_indices = sorted({int(m[1]) for m in map(_OUTPUT_NORM_KEY.match, state_dict) if m})
    extra = dict(in_channels=stem.shape[1], deploy=deploy,
                 layer_scale_init_value=None if gamma is None and not deploy else 1e-6,
                 out_indices=tuple(out_indices) or tuple(range(len(depths))))
    return arch, extra


def unireplknet_arch_name(arch: Mapping, arch_settings: Mapping[str, Mapping]) -> str:
    """The name of the setting in ``arch_settings`` equal to ``arch``, else 'custom'.

    Args:
        arch (Mapping): ``depths``, ``dims`` and ``kernel_sizes``.
        arch_settings (Mapping[str, Mapping]): Named settings (``UniRepLKNet.arch_settings``).

    Returns:
        str: E.g. 'T', or 'custom'.
    """
    found = _as_tuples(arch)
    return next((name for name, setting in arch_settings.items()
                 if _as_tuples(setting) == found), 'custom')


def describe_unireplknet(state_dict: Mapping[str, torch.Tensor],
                         arch_settings: Mapping[str, Mapping]) -> str:
    """Names the UniRepLKNet a backbone state dict holds, for error messages.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Backbone keys (prefixes removed).
        arch_settings (Mapping[str, Mapping]): Named settings (``UniRepLKNet.arch_settings``).

    Returns:
        str: E.g. 'a training-form UniRepLKNet-T'.
    """
    try:
        arch, extra = infer_unireplknet_arch(state_dict)
    except CheckpointMismatchError as err:
        return str(err)
    name = unireplknet_arch_name(arch, arch_settings)
    form = 'folded' if extra['deploy'] else 'training-form'
    if name == 'custom':
        return f'a {form} custom UniRepLKNet (depths {arch["depths"]}, dims {arch["dims"]})'
    return f'a {form} UniRepLKNet-{name}'


def match_unireplknet_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                                 filename: str = '<state dict>') -> LoadReport:
    """Loads backbone weights into a UniRepLKNet: every weight but the output norms must fit.

    The output norms ``norm{i}`` exist only in downstream checkpoints; an ImageNet file leaves
    them at their initial values (reported as missing). Anything else missing, or any shape
    mismatch, raises and names what the file looks like.

    Args:
        model (nn.Module): A UniRepLKNet backbone.
        state_dict (Mapping[str, torch.Tensor]): Weights with backbone key names.
        filename (str): Where they came from, for messages.

    Returns:
        LoadReport: Loaded, missing and unexpected keys.
    """
    hint = f'it looks like {describe_unireplknet(state_dict, model.arch_settings)}'
    own = model.state_dict()
    if is_folded(state_dict) == is_folded(own):
        missing = [key for key in own
                   if key not in state_dict and not _OUTPUT_NORM_KEY.match(key)]
        if missing:
            shown = ', '.join(missing[:3]) + (f' ({len(missing) - 3} more)'
                                              if len(missing) > 3 else '')
            raise CheckpointMismatchError(
                f'{filename} does not fit this UniRepLKNet (depths {model.arch_setting["depths"]}, '
                f'dims {model.arch_setting["dims"]}): it lacks {shown}; {hint}')
    # A folded file in a training-form model (or the reverse) is named as such here.
    return load_weights(model, state_dict, 'partial', filename, hint=hint)


def load_unireplknet_weights(model: nn.Module, filename: str | os.PathLike,
                             prefix: str | None = None) -> LoadReport:
    """Loads the authors' ImageNet, a converted or a downstream checkpoint into a backbone.

    Args:
        model (nn.Module): A UniRepLKNet backbone.
        filename (str | os.PathLike): Checkpoint path, read under the trust policy.
        prefix (str, optional): Only keys under this prefix, with it removed; None strips
            ``module.``/``backbone.``. Defaults to None.

    Returns:
        LoadReport: What was loaded, missing and dropped (the classifier among them).
    """
    filename = os.fspath(filename)
    state_dict, dropped = extract_backbone(unwrap_state_dict(load_checkpoint_file(filename)),
                                           unireplknet_roots(), RELEASE_PREFIXES, prefix)
    report = match_unireplknet_state_dict(model, state_dict, filename)
    report.dropped = dropped + report.dropped
    return report


def _as_tuples(arch: Mapping) -> tuple:
    return (tuple(arch['depths']), tuple(arch['dims']),
            tuple(tuple(sizes) for sizes in arch['kernel_sizes']))


def _get(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise CheckpointMismatchError(f'incomplete UniRepLKNet checkpoint: {key} is missing')
    return state_dict[key]


def _kernel(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    for name in ('lk_origin.weight', 'weight'):
        if prefix + name in state_dict:
            return state_dict[prefix + name].shape[-1]
    raise CheckpointMismatchError(f'incomplete UniRepLKNet checkpoint: no {prefix}weight or '
                                  f'{prefix}lk_origin.weight')

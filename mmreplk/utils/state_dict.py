"""Pure key remapping between released RepLKNet checkpoints and the backbone, and the backbone's
``Pretrained`` loader on top of :func:`~mmreplk.utils.weights.load_weights`."""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from .checkpoint import load_checkpoint_file
from .weights import LoadReport, load_weights, unwrap_state_dict

BACKBONE_ROOTS = ('stem.', 'stages.', 'transitions.')
_PREFIXES = ('module.', 'backbone.')
_WIDTH_TO_ARCH = {128: '31B', 192: '31L', 256: 'XL'}


def to_backbone_state_dict(state_dict: Mapping[str, torch.Tensor],
                           prefix: str | None = None,
                           roots: tuple[str, ...] = BACKBONE_ROOTS) -> tuple[dict, list[str]]:
    """Maps a released, mmpretrain-converted or downstream state dict to backbone keys.

    Strips ``module.``/``backbone.`` (or the given ``prefix``) and drops everything that is not
    part of the backbone (classifier ``norm.*``/``head.*``, necks, decode heads).

    Args:
        state_dict (Mapping[str, torch.Tensor]): Source weights.
        prefix (str, optional): Only keep keys under this prefix, with it removed.
            Defaults to None (strip the usual prefixes).
        roots (tuple[str, ...]): Key starts of the backbone's modules. Defaults to RepLKNet's
            :data:`BACKBONE_ROOTS`.

    Returns:
        tuple[dict, list[str]]: Backbone state dict, and the source keys that were dropped.
    """
    kept: dict[str, torch.Tensor] = OrderedDict()
    dropped = []
    for key, value in state_dict.items():
        name = key
        if prefix:
            if not name.startswith(prefix):
                dropped.append(key)
                continue
            name = name[len(prefix):]
        else:
            for strip in _PREFIXES:
                if name.startswith(strip):
                    name = name[len(strip):]
        if name.startswith(roots):
            kept[name] = value
        else:
            dropped.append(key)
    return kept, dropped


def guess_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Names the RepLKNet variant a backbone state dict was trained as (for error messages)."""
    stem = state_dict.get('stem.0.conv.weight')
    if stem is None:
        return 'not a RepLKNet checkpoint (no stem.0.conv.weight)'
    width = stem.shape[0]
    return _WIDTH_TO_ARCH.get(width, f'a custom arch with stem width {width}')


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
    return load_weights(model, state_dict, 'partial', filename,
                        hint=f'it looks like {guess_arch(state_dict)}')


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
    state_dict, dropped = to_backbone_state_dict(unwrap_state_dict(load_checkpoint_file(filename)),
                                                 prefix)
    report = match_state_dict(model, state_dict, filename)
    report.dropped = dropped + report.dropped
    return report

"""Pure key remapping between released RepLKNet checkpoints and the backbone, and its loader."""
from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from .checkpoint import load_checkpoint_file

BACKBONE_ROOTS = ('stem.', 'stages.', 'transitions.')
_WRAPPERS = ('state_dict', 'model', 'module')
_PREFIXES = ('module.', 'backbone.')
_WIDTH_TO_ARCH = {128: '31B', 192: '31L', 256: 'XL'}


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """Returns the tensor dict inside a released file ('model'/'state_dict' wrappers removed).

    Args:
        obj (object): What ``torch.load`` returned.

    Returns:
        dict[str, torch.Tensor]: The state dict.
    """
    while isinstance(obj, Mapping):
        wrapper = next((key for key in _WRAPPERS if key in obj and isinstance(obj[key], Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError('no state dict found: expected a dict of tensors, optionally wrapped in '
                         f'{_WRAPPERS}')
    return dict(obj)


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
        if name.startswith(BACKBONE_ROOTS):
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


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did."""
    filename: str
    loaded: list[str]
    missing: list[str]
    dropped: list[str]

    def summary(self) -> str:
        lines = [f'RepLKNet: loaded {len(self.loaded)} tensors from {self.filename}']
        if self.dropped:
            lines.append(f'  dropped {len(self.dropped)} keys that are not part of the backbone: '
                         f'{_abbrev(self.dropped)}')
        if self.missing:
            lines.append(f'  missing {len(self.missing)} keys (left at their initial values): '
                         f'{_abbrev(self.missing)}')
        return '\n'.join(lines)


def _abbrev(keys: list[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


def match_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     filename: str = '<state dict>') -> LoadReport:
    """Checks a backbone state dict against ``model`` and loads it; raises on a wrong arch.

    Args:
        model (nn.Module): A RepLKNet backbone.
        state_dict (Mapping[str, torch.Tensor]): Weights with backbone key names.
        filename (str): Where they came from, for messages.

    Returns:
        LoadReport: Loaded, missing and unexpected keys.
    """
    own = model.state_dict()
    model_arch = getattr(model, 'arch_setting', {})
    reparam_in_file = any('lkb_reparam' in key for key in state_dict)
    if reparam_in_file != any('lkb_reparam' in key for key in own):
        form = 'deploy (folded)' if reparam_in_file else 'training'
        raise ValueError(f'checkpoint {filename} holds a {form}-form RepLKNet; build the backbone '
                         f'with deploy={reparam_in_file} to load it')
    mismatched = [f'{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    unexpected = [k for k in state_dict if k not in own]
    loaded = [k for k in state_dict if k in own and own[k].shape == state_dict[k].shape]
    if mismatched or len(loaded) < len(own) // 2:
        detail = '; '.join(mismatched[:3]) if mismatched else (
            f'only {len(loaded)} of {len(own)} backbone keys found')
        raise ValueError(f'checkpoint {filename} does not fit this RepLKNet (channels '
                         f'{model_arch.get("channels")}, kernels '
                         f'{model_arch.get("large_kernel_sizes")}): it looks like '
                         f'{guess_arch(state_dict)}. {detail}')
    missing = [k for k in own if k not in state_dict]
    model.load_state_dict({k: state_dict[k] for k in loaded}, strict=False)
    return LoadReport(filename, loaded, missing, unexpected)


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

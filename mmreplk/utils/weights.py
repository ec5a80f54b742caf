"""The one weight loader: a state dict into a module, under an explicit strictness mode.

Every path that puts saved weights into a model goes through :func:`load_weights`: the
backbone's ``Pretrained`` initialisation, checkpoint conversion, re-parameterization, ONNX
export, the ERF analysis and folder inference. What differs between them is only how strict the
fit must be, named by a :data:`STRICTNESS` mode:

* ``'exact'``: the file holds exactly the module's keys, with the module's shapes (a whole model
  and the checkpoint written for its config);
* ``'complete'``: every key of the module is in the file, with its shape; other keys are
  ignored (a backbone taken out of a whole-model checkpoint);
* ``'partial'``: no key the two share differs in shape, and the file covers at least half of
  the module; missing keys keep their initial values (pretrained weights from another task);
* ``'lenient'``: whatever fits by name and shape is loaded, the rest is reported (mmengine's
  ``load_checkpoint(strict=False)``, which folder inference has always used).

A module with a deploy (re-parameterized) form names the state-dict keys only that form has in
a ``deploy_only_keys`` class attribute (:data:`DEPLOY_ONLY_ATTR`); every mode reads them off the
module it loads into and names a training/deploy mismatch as such. This layer knows no model:
key names, arch tables and prefixes of released files live beside each backbone.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import torch
from mmengine.logging import MMLogger
from torch import nn

from .checkpoint import load_checkpoint_file
from .errors import UserError
from .keys import DDP_PREFIX, holds_keys_ending, strip_prefixes

#: Strictness modes of :func:`load_weights`, from strictest to most lenient.
STRICTNESS = ('exact', 'complete', 'partial', 'lenient')

#: Class attribute of a module with a deploy form: key endings (relative to the module) that only
#: its deploy form has, e.g. ``('fused.weight',)``.
DEPLOY_ONLY_ATTR = 'deploy_only_keys'

_WRAPPERS = ('state_dict', 'model', 'module')


class CheckpointMismatchError(UserError, ValueError):
    """A file's weights do not fit the module they are loaded into, or it holds no weights."""


def deploy_only_keys(module: nn.Module) -> set[str]:
    """The key endings that only the deploy form of ``module`` or one of its children has.

    Args:
        module (nn.Module): Any module; children declare them by :data:`DEPLOY_ONLY_ATTR`.

    Returns:
        set[str]: The endings (empty if nothing in ``module`` has a deploy form).
    """
    return {ending for child in module.modules()
            for ending in getattr(type(child), DEPLOY_ONLY_ATTR, ())}


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """Returns the tensor dict inside a saved file ('model'/'state_dict' wrappers removed).

    Args:
        obj (object): What ``torch.load`` returned.

    Returns:
        dict[str, torch.Tensor]: The state dict.

    Raises:
        CheckpointMismatchError: ``obj`` holds no dict of tensors.
    """
    while isinstance(obj, Mapping):
        wrapper = next((key for key in _WRAPPERS if key in obj and isinstance(obj[key], Mapping)),
                       None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointMismatchError('no state dict found: expected a dict of tensors, '
                                      f'optionally wrapped in {_WRAPPERS}')
    return dict(obj)


def read_state_dict(checkpoint: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Reads a checkpoint (runner-written, released or plain) under the trust policy.

    Args:
        checkpoint (str | os.PathLike): Checkpoint path.

    Returns:
        tuple[dict, dict]: The state dict (wrappers and a DDP ``module.`` prefix removed) and
        the file's ``meta`` entry (empty if it has none).
    """
    obj = load_checkpoint_file(checkpoint)
    meta = obj.get('meta') if isinstance(obj, Mapping) else None
    state_dict = {strip_prefixes(key, (DDP_PREFIX,)): value
                  for key, value in unwrap_state_dict(obj).items()}
    state_dict, copies = drop_legacy_ema_copies(state_dict)
    if copies:
        MMLogger.get_current_instance().info(
            f'{checkpoint}: ignored {len(copies)} ema_* copies that mmcv 1.x\'s EMAHook saved '
            'beside the parameters (the parameters already hold the averaged weights)')
    return state_dict, dict(meta) if isinstance(meta, Mapping) else {}


def drop_legacy_ema_copies(
        state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Removes the ``ema_<name with _ for .>`` buffers of mmcv 1.x's EMAHook (mmdet 2.x's
    ``ExpMomentumEMAHook``, used by some released detectors).

    That hook swaps the averaged weights into the parameters before a checkpoint is saved, so
    the parameters are the weights to evaluate and the ``ema_*`` entries are the raw ones.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Weights as saved.

    Returns:
        tuple[dict, list[str]]: The weights without the copies, and the keys removed.
    """
    flattened = {key.replace('.', '_') for key in state_dict if not key.startswith('ema_')}
    copies = [key for key in state_dict
              if key.startswith('ema_') and key.removeprefix('ema_') in flattened]
    removed = set(copies)
    return {key: value for key, value in state_dict.items() if key not in removed}, copies


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Args:
        filename (str): Where the weights came from.
        loaded (list[str]): Keys loaded.
        missing (list[str]): Keys of the module the file lacks (left as they were).
        dropped (list[str]): Keys of the file that were not loaded.
        target (str): What was loaded into, for the summary. Defaults to 'model'.
    """
    filename: str
    loaded: list[str]
    missing: list[str]
    dropped: list[str]
    target: str = 'model'

    def summary(self) -> str:
        """Human-readable report."""
        lines = [f'{self.target}: loaded {len(self.loaded)} tensors from {self.filename}']
        if self.dropped:
            lines.append(f'  dropped {len(self.dropped)} keys that are not part of the '
                         f'{self.target}: {abbreviate(self.dropped)}')
        if self.missing:
            lines.append(f'  missing {len(self.missing)} keys (left at their initial values): '
                         f'{abbreviate(self.missing)}')
        return '\n'.join(lines)


def abbreviate(keys: list[str], limit: int = 8) -> str:
    """The first ``limit`` keys, comma-separated, and how many more there are."""
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


def _fold_mismatch(state_dict: Mapping[str, torch.Tensor], module: nn.Module,
                   source: str) -> str | None:
    endings = deploy_only_keys(module)
    folded = holds_keys_ending(state_dict, endings)
    if not endings or folded == holds_keys_ending(module.state_dict(), endings):
        return None
    if folded:
        return (f'{source} holds a deploy (folded)-form model but the model is in training '
                'form: build it with deploy=True (for a config: --cfg-options '
                'model.backbone.deploy=True)')
    return (f'{source} holds a training-form model but the model is folded: build it with '
            'deploy=False (drop model.backbone.deploy=True)')


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: str,
                 source: str = '<state dict>', hint: str = '') -> LoadReport:
    """Loads ``state_dict`` into ``module`` if it fits as the ``strict`` mode demands.

    Args:
        module (nn.Module): Where the weights go.
        state_dict (Mapping[str, torch.Tensor]): Weights with the module's key names.
        strict (str): One of :data:`STRICTNESS` (see the module docstring).
        source (str): Where the weights came from, for messages. Defaults to '<state dict>'.
        hint (str): What the weights look like instead, added to a mismatch message.
            Defaults to ''.

    Returns:
        LoadReport: Loaded, missing and dropped keys.

    Raises:
        CheckpointMismatchError: The weights do not fit as demanded.
    """
    if strict not in STRICTNESS:
        raise ValueError(f'unknown strictness {strict!r}; choose from {STRICTNESS}')
    own = module.state_dict()
    name = type(module).__name__
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    wrong_shape = [f'{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}'
                   for key, value in state_dict.items()
                   if key in own and own[key].shape != value.shape]
    loaded = [key for key in state_dict if key in own and own[key].shape == state_dict[key].shape]
    fold_mismatch = _fold_mismatch(state_dict, module, source)

    problems = {
        'exact': missing or unexpected or wrong_shape,
        'complete': missing or wrong_shape,
        'partial': wrong_shape or len(loaded) < len(own) // 2,
        'lenient': False,
    }[strict]
    if fold_mismatch and strict != 'exact':
        # Even where names overlap enough to load, a folded file in a training-form model (or
        # the reverse) would compute something else.
        raise CheckpointMismatchError(fold_mismatch)
    if problems:
        raise CheckpointMismatchError(_mismatch_message(
            strict, name, source, missing, unexpected, wrong_shape, loaded, len(own),
            fold_mismatch or hint))
    module.load_state_dict({key: state_dict[key] for key in loaded}, strict=strict == 'exact')
    return LoadReport(source, loaded, missing, unexpected + [k.split(':')[0] for k in wrong_shape],
                      name)


def _mismatch_message(strict: str, name: str, source: str, missing: list, unexpected: list,
                      wrong_shape: list, loaded: list, num_own: int, hint: str) -> str:
    if strict == 'exact':
        details = [f'{len(items)} {what} (e.g. {", ".join(items[:3])})'
                   for what, items in (('missing keys', missing), ('unexpected keys', unexpected),
                                       ('shape mismatches', wrong_shape)) if items]
        return (f'{source} does not fit the model of the config: {"; ".join(details)}; '
                f'{hint or "is it the checkpoint of this config?"}')
    if strict == 'complete' and missing:
        return (f'{source} lacks {len(missing)} weights of the {name} backbone (e.g. '
                f'{", ".join(missing[:3])}); pass the checkpoint that belongs to this config')
    detail = '; '.join(wrong_shape[:3]) if wrong_shape else (
        f'only {len(loaded)} of {num_own} keys found')
    return f'checkpoint {source} does not fit this {name}: ' + (
        f'{hint}. {detail}' if hint else detail)

"""State-dict key helpers that know no model: prefixes of wrapped or released files, the part
of a state dict under given roots, keys by their ending. Each backbone names its own roots and
prefixes beside its code."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

#: Prefix that ``DistributedDataParallel`` puts before every key.
DDP_PREFIX = 'module.'


def holds_keys_ending(state_dict: Mapping[str, torch.Tensor], endings: Iterable[str]) -> bool:
    """Whether a key of ``state_dict`` equals one of ``endings`` or ends in ``'.' + ending``.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Weights, or a module's own ``state_dict()``.
        endings (Iterable[str]): Key endings, e.g. ``('fused.weight',)``.

    Returns:
        bool: True if a key matches.
    """
    endings = tuple(endings)
    dotted = tuple('.' + ending for ending in endings)
    return bool(endings) and any(key in endings or key.endswith(dotted) for key in state_dict)


def strip_prefixes(key: str, prefixes: Sequence[str]) -> str:
    """``key`` with each of ``prefixes`` removed, in order, where it starts with it.

    Args:
        key (str): A state-dict key.
        prefixes (Sequence[str]): E.g. ``('module.', 'backbone.')``.

    Returns:
        str: The key without them.
    """
    for prefix in prefixes:
        key = key.removeprefix(prefix)
    return key


def select_prefix(state_dict: Mapping[str, torch.Tensor],
                  prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The keys under ``prefix``, with it removed, and the keys that are not.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Weights.
        prefix (str): E.g. 'backbone.'.

    Returns:
        tuple[dict, list[str]]: The selected weights and the other (unchanged) keys.
    """
    selected = {key[len(prefix):]: value for key, value in state_dict.items()
                if key.startswith(prefix)}
    return selected, [key for key in state_dict if not key.startswith(prefix)]


def extract_backbone(state_dict: Mapping[str, torch.Tensor], roots: Sequence[str],
                     prefixes: Sequence[str] = (), prefix: str | None = None
                     ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The part of a released, converted or whole-model state dict that belongs to a backbone.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Source weights.
        roots (Sequence[str]): Key starts of the backbone's top-level modules, e.g. 'stem.'.
        prefixes (Sequence[str]): Removed, in order, where a key starts with them (e.g.
            ``('module.', 'backbone.')``). Defaults to ().
        prefix (str, optional): Instead of ``prefixes``: only keys under this prefix are kept,
            with it removed. Defaults to None.

    Returns:
        tuple[dict, list[str]]: Backbone weights, and the source keys that were dropped.
    """
    roots = tuple(roots)
    if prefix:
        renamed, dropped = select_prefix(state_dict, prefix)
        sources = {name: prefix + name for name in renamed}
    else:
        renamed = {strip_prefixes(key, prefixes): value for key, value in state_dict.items()}
        sources = {strip_prefixes(key, prefixes): key for key in state_dict}
        dropped = []
    kept = {name: value for name, value in renamed.items() if name.startswith(roots)}
    return kept, dropped + [sources[name] for name in renamed if name not in kept]

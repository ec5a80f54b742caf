"""Whole-model structural re-parameterization, and telling a folded state dict from another."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmreplk.utils import holds_keys_ending
from .layers import ReparamLargeKernelConv, UniRepLKNetBlock

#: Bricks of this package with a deploy form (each names its ``deploy_only_keys``).
FOLDABLE_BRICKS = (ReparamLargeKernelConv, UniRepLKNetBlock)


def reparameterize(model: nn.Module) -> nn.Module:
    """Folds every re-parameterizable module of ``model`` (the root included), in place.

    Every module that has a ``reparameterize()`` method is folded, so this serves a bare
    backbone as well as a whole segmentor or detector. Modules that carry a ``deploy`` flag
    (such as :class:`RepLKNet`) have it set. Calling it twice changes nothing.

    Args:
        model (nn.Module): The model to fold.

    Returns:
        nn.Module: ``model`` itself.
    """
    bricks = [m for m in model.modules() if callable(getattr(m, 'reparameterize', None))]
    for brick in bricks:
        brick.reparameterize()
    for module in model.modules():
        if hasattr(module, 'switch_to_deploy') and hasattr(module, 'deploy'):
            module.deploy = True
    return model


def is_folded(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict holds a re-parameterized (deploy-form) model.

    Args:
        state_dict (Mapping[str, torch.Tensor]): Weights, or a module's own ``state_dict()``.

    Returns:
        bool: True if any key belongs only to the deploy form of a brick in
        :data:`FOLDABLE_BRICKS`.
    """
    return any(holds_keys_ending(state_dict, brick.deploy_only_keys) for brick in FOLDABLE_BRICKS)

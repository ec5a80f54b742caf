"""Whole-model structural re-parameterization."""
from __future__ import annotations

from torch import nn


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

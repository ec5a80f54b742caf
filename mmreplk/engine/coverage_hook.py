"""Evaluating only weights that were loaded: a checkpoint must cover the model it is tested on."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS

from ..utils import DDP_PREFIX, ToolError, load_weights, strip_prefixes, unwrap_state_dict


class CheckpointCoverageError(ToolError):
    """A checkpoint to be evaluated does not hold every tensor of the model."""


def check_state_dict_covers(model: torch.nn.Module, checkpoint: Mapping,
                            source: str) -> float:
    """Refuses weights that do not cover ``model``; loads them (as mmengine does right after).

    mmengine loads whatever matches and only logs the rest, so the metrics of a model that is
    partly (or wholly) at its random initialisation would be reported. A folded (deploy-form)
    checkpoint for a training-form model, or the reverse, is named as such with the fix
    (``model.backbone.deploy=True``), the message folder inference gives.

    Args:
        model (torch.nn.Module): The model (a DDP wrapper or TTA model is looked through).
        checkpoint (Mapping): What the checkpoint file holds.
        source (str): Where it came from, for messages.

    Returns:
        float: The share of the model's tensors the checkpoint holds (1.0 when it passes).

    Raises:
        CheckpointMismatchError: A folded/training-form mismatch.
        CheckpointCoverageError: Some of the model's tensors are missing or have other shapes.
    """
    # What mmengine loads into: the model inside a DDP wrapper or a test-time-augmentation model.
    if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    # mmengine's own loading strips the same prefix (its revise_keys default).
    state_dict = {strip_prefixes(key, (DDP_PREFIX,)): value
                  for key, value in unwrap_state_dict(checkpoint).items()}
    report = load_weights(model, state_dict, 'lenient', source=source)
    own = list(model.state_dict())
    if len(report.loaded) == len(own):
        return 1.0
    share = len(report.loaded) / len(own)
    loaded = set(report.loaded)
    missing = [key for key in own if key not in loaded]
    shown = ', '.join(missing[:5]) + (f', ... ({len(missing) - 5} more)' if len(missing) > 5
                                      else '')
    raise CheckpointCoverageError(
        f'{source} covers {share:.0%} of the model\'s tensors ({len(report.loaded)} of '
        f'{len(own)}); the metrics would be those of partly random weights. Not loaded: '
        f'{shown}. Evaluate the checkpoint trained with this config, or one converted to its '
        f'names.')


@HOOKS.register_module()
class CheckpointCoverageHook(Hook):
    """Stops an evaluation whose checkpoint does not cover the model
    (:func:`check_state_dict_covers`); :func:`mmreplk.apis.test` adds it."""

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Checks the loaded checkpoint before mmengine puts it into the model.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The loaded checkpoint.
        """
        check_state_dict_covers(runner.model, checkpoint, str(runner._load_from))

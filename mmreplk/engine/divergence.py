"""Recognising a diverged run: non-finite losses, gradient norms and weights.

The check costs no device synchronisation in the training loop: mmengine's ``RuntimeInfoHook``
already pulls every logged value of an iteration to the host (``.item()``) to put it in the
message hub, and ``OptimWrapper`` does the same with the gradient norm where it clips. The
losses are read back from there as Python floats. The weights themselves are checked only
right before a checkpoint is written, where the save copies every tensor to the host anyway.
"""
from __future__ import annotations

import math

import torch
from mmengine.logging import MessageHub
from torch import nn

from ..utils.errors import ToolError
from .resume import ResumableError

#: Logged value that ``OptimWrapper`` writes when it clips gradients by norm.
GRAD_NORM_KEY = 'grad_norm'


class TrainingDiverged(ResumableError, ToolError):
    """The losses (or gradient norm, or weights) of a run stopped being finite; nothing
    non-finite was saved."""


def nonfinite_terms(message_hub: MessageHub, logged: list[str]) -> dict[str, float]:
    """The loss terms (and gradient norm) of the current iteration that are NaN or infinite.

    Args:
        message_hub (MessageHub): The runner's hub, after ``RuntimeInfoHook`` stored the
            iteration's outputs (its priority is VERY_HIGH: before any checkpoint hook).
        logged (list[str]): Names of the model's outputs this iteration (its ``log_vars``).

    Returns:
        dict[str, float]: Term name -> value, only the non-finite ones.
    """
    names = [name for name in logged if 'loss' in name]
    if f'train/{GRAD_NORM_KEY}' in message_hub.log_scalars:
        names.append(GRAD_NORM_KEY)
    found = {}
    for name in names:
        buffer = message_hub.log_scalars.get(f'train/{name}')
        if buffer is None:
            continue
        value = float(buffer.current())
        if not math.isfinite(value):
            found[name] = value
    return found


def weights_are_finite(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``model`` is finite.

    One reduction per tensor and a single transfer of the answer to the host.
    """
    checks = [torch.isfinite(tensor).all() for tensor in (*model.parameters(), *model.buffers())
              if tensor.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


def divergence_message(iteration: int, terms: dict[str, float] | str, checkpoint: str | None,
                       learning_rates: dict[str, float], amp: bool, warmup: bool,
                       max_nonfinite_steps: int) -> str:
    """The one message a diverged run stops with (the resume command is added by the tool).

    Args:
        iteration (int): The iteration (1-based) whose values were not finite.
        terms (dict[str, float] | str): The non-finite terms, or what else was not finite.
        checkpoint (str, optional): The newest finite checkpoint; None without one.
        learning_rates (dict[str, float]): Current learning rates by parameter group name.
        amp (bool): Whether the run uses mixed precision.
        warmup (bool): Whether a warm-up schedule is configured.
        max_nonfinite_steps (int): The skip allowance that was used up.

    Returns:
        str: The message.
    """
    if isinstance(terms, str):
        what = terms
    else:
        what = ', '.join(f'{name} = {value}' for name, value in terms.items())
    hints = [f'lower the learning rate (now {_rates(learning_rates)}: '
             '--cfg-options optim_wrapper.optimizer.lr=...)']
    if not warmup:
        hints.append('add a warm-up (a LinearLR param_scheduler over the first ~1,500 '
                     'iterations)')
    if amp:
        hints.append('train without --amp, or clip gradients (optim_wrapper.clip_grad)')
    if max_nonfinite_steps:
        hints.append(f'(already {max_nonfinite_steps} non-finite steps were skipped)')
    else:
        hints.append('with --amp, let a few overflowing steps be skipped: '
                     'default_hooks.checkpoint.max_nonfinite_steps=N')
    kept = (f'The newest finite checkpoint is {checkpoint}: fix the cause, then resume from it'
            if checkpoint else 'This run has no checkpoint yet: fix the cause, then start again')
    return (f'training diverged at iteration {iteration}: {what}. No checkpoint of non-finite '
            f'weights was written. Try: {"; ".join(hints)}. {kept}')


def _rates(learning_rates: dict[str, float]) -> str:
    values = sorted({float(value) for value in learning_rates.values()})
    return ', '.join(f'{value:g}' for value in values) or 'unknown'

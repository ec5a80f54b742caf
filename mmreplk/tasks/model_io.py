"""Config -> model -> outputs, for any task: the steps deployment and analysis share.

:func:`build_model` asks the config's task adapter (which builds every task's model the same
way); :func:`input_normalization` reads what a data preprocessor does to an image, and
:func:`max_differences` compares two forms of a model.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import torch
from mmengine.config import Config
from torch import nn

from .base import task_adapter


def build_model(cfg: Config, checkpoint: str | os.PathLike | None = None,
                deploy: bool | None = None, device: str | torch.device = 'cpu',
                strict: str = 'exact') -> nn.Module:
    """Builds the model of a config through its task adapter (see
    :meth:`~mmreplk.tasks.TaskAdapter.build_model` for the arguments).

    Returns:
        nn.Module: The model in eval mode with plain BatchNorm.
    """
    return task_adapter(cfg).build_model(cfg, checkpoint, deploy=deploy, device=device,
                                         strict=strict)


class InputNormalization(NamedTuple):
    """What a data preprocessor does to a BGR image before the backbone sees it.

    Args:
        bgr_to_rgb (bool): Whether the channels are reversed.
        mean (torch.Tensor, optional): Subtracted per channel (None: no normalization).
        std (torch.Tensor, optional): Divided by per channel (None: no normalization).
    """
    bgr_to_rgb: bool
    mean: torch.Tensor | None
    std: torch.Tensor | None


def input_normalization(preprocessor: nn.Module) -> InputNormalization:
    """Reads channel order, mean and std off a model's data preprocessor.

    Both facts are private state: mmengine's ``ImgDataPreprocessor`` (which mmdet's extends)
    keeps them in ``_channel_conversion`` and ``_enable_normalize``; mmseg's
    ``SegDataPreProcessor`` in ``channel_conversion`` and ``_enable_normalize``. This is the one
    place that reads them, and it fails loudly if an upstream release renames them.

    Args:
        preprocessor (nn.Module): A model's ``data_preprocessor``.

    Returns:
        InputNormalization: Channel order and the mean/std tensors (shape (3, 1, 1)).

    Raises:
        AttributeError: The preprocessor keeps neither attribute: the upstream API changed.
    """
    bgr_to_rgb = getattr(preprocessor, 'channel_conversion',
                         getattr(preprocessor, '_channel_conversion', None))
    normalize = getattr(preprocessor, '_enable_normalize', None)
    if bgr_to_rgb is None or normalize is None:
        raise AttributeError(f'{type(preprocessor).__name__} has no (_)channel_conversion or '
                             '_enable_normalize: the data preprocessor API of mmengine/mmseg '
                             'changed; update mmreplk.tasks.model_io.input_normalization')
    return InputNormalization(bool(bgr_to_rgb), preprocessor.mean if normalize else None,
                              preprocessor.std if normalize else None)


def max_differences(actual: Sequence[torch.Tensor],
                    expected: Sequence[torch.Tensor]) -> tuple[float, float]:
    """``(max |actual - expected|, max |expected|)`` over matching lists of tensors.

    Args:
        actual (Sequence[torch.Tensor]): Outputs to check.
        expected (Sequence[torch.Tensor]): Reference outputs of the same shapes.

    Returns:
        tuple[float, float]: Max absolute difference and max absolute reference value.
    """
    if len(actual) != len(expected):
        raise ValueError(f'{len(actual)} outputs vs {len(expected)} expected')
    diff = max((a.float() - e.float()).abs().max().item() for a, e in zip(actual, expected))
    scale = max(e.float().abs().max().item() for e in expected)
    return diff, scale

"""Building a segmentor or detector from its config, loading its weights and feeding it an image.

The deployment and analysis functions share these steps: build the model the config describes
(in training or deploy form), load a checkpoint under the package's trust policy, and run it on
one image prepared by the model's own data preprocessor.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from mmreplk.utils import load_checkpoint_file, unwrap_state_dict

#: Config ``default_scope`` values this module knows how to feed.
SUPPORTED_SCOPES = ('mmseg', 'mmdet')


def model_scope(cfg: Config) -> str:
    """The task of a config: 'mmseg' or 'mmdet' (its ``default_scope``).

    Args:
        cfg (Config): A segmentation or detection config.

    Returns:
        str: 'mmseg' or 'mmdet'.
    """
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise ValueError(f'config has default_scope {scope!r}; these tools support segmentation '
                         f"and detection configs (default_scope 'mmseg' or 'mmdet'): inherit "
                         "mmseg::_base_/default_runtime.py or mmdet::_base_/default_runtime.py")
    return scope


def build_model(cfg: Config, deploy: bool | None = None,
                device: str | torch.device = 'cpu') -> nn.Module:
    """Builds the config's model in eval mode with plain BatchNorm (single process).

    Pretrained ``init_cfg`` files are not loaded (weights come from a checkpoint, if any).

    Args:
        cfg (Config): A segmentation or detection config.
        deploy (bool, optional): Sets ``model.backbone.deploy``; None keeps the config's value.
            Defaults to None.
        device (str | torch.device): Where to put the model. Defaults to 'cpu'.

    Returns:
        nn.Module: The model.
    """
    init_default_scope(model_scope(cfg))
    model_cfg = copy.deepcopy(cfg.model)
    if deploy is not None:
        model_cfg.backbone.deploy = deploy
    try:
        model = MODELS.build(model_cfg)
    except TypeError as err:
        if deploy and 'deploy' in str(err):
            raise ValueError(f'backbone {model_cfg.backbone.get("type")!r} has no deploy form; '
                             're-parameterization needs a RepLKNet backbone') from None
        raise
    return revert_sync_batchnorm(model).to(device).eval()


def read_state_dict(checkpoint: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Reads a whole-model checkpoint (runner-written or plain) under the trust policy.

    Args:
        checkpoint (str | os.PathLike): Checkpoint path.

    Returns:
        tuple[dict, dict]: The state dict (a DDP ``module.`` prefix removed) and the file's
        ``meta`` entry (empty if it has none).
    """
    obj = load_checkpoint_file(checkpoint)
    meta = obj.get('meta') if isinstance(obj, Mapping) else None
    state_dict = unwrap_state_dict(obj)
    state_dict = {key.removeprefix('module.'): value for key, value in state_dict.items()}
    return state_dict, dict(meta) if isinstance(meta, Mapping) else {}


def is_folded(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict holds a re-parameterized (deploy-form) RepLKNet."""
    return any('lkb_reparam' in key for key in state_dict)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str) -> None:
    """Loads weights that must fit ``model`` exactly, naming the mismatch and its likely cause.

    Args:
        model (nn.Module): The model built from the checkpoint's config.
        state_dict (Mapping[str, torch.Tensor]): Its weights.
        source (str): Where they came from, for messages.
    """
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    wrong_shape = [f'{key} {tuple(value.shape)} vs {tuple(own[key].shape)}'
                   for key, value in state_dict.items()
                   if key in own and own[key].shape != value.shape]
    if missing or unexpected or wrong_shape:
        if is_folded(state_dict) != is_folded(own):
            hint = ('the checkpoint is re-parameterized: build with '
                    '--cfg-options model.backbone.deploy=True' if is_folded(state_dict) else
                    'the checkpoint is in training form but the config builds a deploy-form '
                    'backbone: drop model.backbone.deploy=True')
        else:
            hint = 'is it the checkpoint of this config?'
        details = [f'{len(items)} {name} (e.g. {", ".join(items[:3])})'
                   for name, items in (('missing keys', missing), ('unexpected keys', unexpected),
                                       ('shape mismatches', wrong_shape)) if items]
        raise ValueError(f'{source} does not fit the model of the config: {"; ".join(details)}; '
                         f'{hint}')
    model.load_state_dict(state_dict, strict=True)


def synthetic_image(shape: Sequence[int] = (512, 512), seed: int = 0) -> np.ndarray:
    """A reproducible random BGR uint8 image, for checks that need no real picture.

    Args:
        shape (Sequence[int]): (H, W). Defaults to (512, 512).
        seed (int): Random seed. Defaults to 0.

    Returns:
        np.ndarray: Image of shape (H, W, 3), dtype uint8.
    """
    height, width = shape
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def prepare_batch(model: nn.Module, scope: str, image: np.ndarray,
                  batch_size: int = 1) -> tuple[torch.Tensor, list]:
    """Runs an image through the model's data preprocessor, with the metadata its task needs.

    Args:
        model (nn.Module): A segmentor or detector.
        scope (str): 'mmseg' or 'mmdet', see :func:`model_scope`.
        image (np.ndarray): BGR uint8 image of shape (H, W, 3).
        batch_size (int): Copies of the image in the batch. Defaults to 1.

    Returns:
        tuple[torch.Tensor, list]: Normalized inputs (N, 3, H', W') on the model's device and
        their data samples.
    """
    height, width = image.shape[:2]
    meta = dict(ori_shape=(height, width), img_shape=(height, width), pad_shape=(height, width))
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        samples = [SegDataSample(metainfo=meta) for _ in range(batch_size)]
    else:
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=dict(meta, scale_factor=(1., 1.)))
                   for _ in range(batch_size)]
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    data = model.data_preprocessor(dict(inputs=[tensor] * batch_size, data_samples=samples), False)
    return data['inputs'], data['data_samples']


def comparable_outputs(model: nn.Module, scope: str, inputs: torch.Tensor,
                       data_samples: list) -> list[torch.Tensor]:
    """The outputs that must not change when the backbone is re-parameterized.

    Segmentors: the decode head's logits. Detectors: the backbone + neck features, since the
    heads after them are unchanged and their proposal selection would turn a rounding-level
    difference into a different set of boxes.

    Args:
        model (nn.Module): A segmentor or detector in eval mode.
        scope (str): 'mmseg' or 'mmdet'.
        inputs (torch.Tensor): Preprocessed inputs.
        data_samples (list): Their data samples.

    Returns:
        list[torch.Tensor]: Output tensors.
    """
    with torch.no_grad():
        if scope == 'mmseg':
            return [model(inputs, data_samples, mode='tensor')]
        return list(model.extract_feat(inputs))


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

"""Effective receptive field (ERF) analysis of a backbone, as in the RepLKNet paper (Sec. 5.1).

For each image, the contribution of every input pixel to the central pixel of the last stage's
output is the gradient of ``sum_c relu(out[c, h/2, w/2])`` w.r.t. the normalized input, passed
through ReLU and summed over channels. The maps are averaged over images, then log-scaled
(``log10(x + 1)``) and divided by their maximum so that models are comparable. The
high-contribution area ratio at threshold t is the area of the smallest centred square whose
scores sum to more than t of the total, divided by the image area.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from torch import nn

from mmreplk.apis import load_config
from mmreplk.models.backbones.base import LargeKernelBackbone
from mmreplk.tasks import ImageReadError, build_model, input_normalization, read_image
from mmreplk.utils import ToolError, load_weights, read_state_dict, require_dir, select_prefix

#: Thresholds of the paper's high-contribution area ratio table.
THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


@dataclasses.dataclass
class ERFResult:
    """Result of :func:`compute_erf`.

    Args:
        scores (np.ndarray): Mean contribution map (H, W) before log-scaling.
        num_images (int): Images averaged.
        skipped (list[str]): Files that were not usable images (or gave NaN gradients).
    """
    scores: np.ndarray
    num_images: int
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def normalized(self) -> np.ndarray:
        """The log-scaled map rescaled to [0, 1]."""
        return normalize_erf(self.scores)

    def area_ratios(self, thresholds: Sequence[float] = THRESHOLDS
                    ) -> dict[float, tuple[int, float] | None]:
        """See :func:`high_contribution_area_ratios` (computed on :attr:`normalized`)."""
        return high_contribution_area_ratios(self.normalized, thresholds)


def normalize_erf(scores: np.ndarray) -> np.ndarray:
    """``log10(scores + 1)`` rescaled so that its maximum is 1.

    Args:
        scores (np.ndarray): Non-negative contribution map.

    Returns:
        np.ndarray: The map in [0, 1] (all zeros if ``scores`` is).
    """
    logged = np.log10(np.asarray(scores, dtype=np.float64) + 1)
    peak = logged.max()
    return logged / peak if peak > 0 else logged


def high_contribution_area_ratios(scores: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
                                  ) -> dict[float, tuple[int, float] | None]:
    """Smallest centred square holding more than each threshold's share of the total score.

    Args:
        scores (np.ndarray): Non-negative map (H, W).
        thresholds (Sequence[float]): Shares in (0, 1). Defaults to :data:`THRESHOLDS`.

    Returns:
        dict[float, tuple[int, float] | None]: Per threshold, (square side in pixels, square
        area / image area), or None if even the largest centred square does not reach it.
    """
    height, width = scores.shape
    total = float(scores.sum())
    cy, cx = height // 2, width // 2
    # Centred squares of side 2i+1 for i = 1 .. min(H, W)//2 - 1, the sizes the authors'
    # analysis script tries; a summed-area table gives every square's sum at once.
    table = np.pad(np.cumsum(np.cumsum(scores, 0), 1), ((1, 0), (1, 0)))
    radii = np.arange(1, min(height, width) // 2)
    top, left, bottom, right = cy - radii, cx - radii, cy + radii + 1, cx + radii + 1
    sums = table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]
    ratios = {}
    for thresh in thresholds:
        reached = np.nonzero(sums > thresh * total)[0] if total > 0 else []
        if len(reached):
            side = 2 * int(radii[reached[0]]) + 1
            ratios[thresh] = (side, side * side / (height * width))
        else:
            ratios[thresh] = None
    return ratios


def save_erf_heatmap(normalized: np.ndarray, path: str | os.PathLike,
                     title: str | None = None) -> Path:
    """Saves a normalized ERF map as a heatmap PNG (red = low, green = high contribution).

    Args:
        normalized (np.ndarray): Map in [0, 1], e.g. :attr:`ERFResult.normalized`.
        path (str | os.PathLike): Output file.
        title (str, optional): Figure title. Defaults to None.

    Returns:
        Path: ``path``.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6, 5))
    image = axes.imshow(normalized, cmap='RdYlGn', vmin=0, vmax=1)
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes)
    figure.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(figure)
    return path


def load_backbone_checkpoint(backbone: nn.Module, checkpoint: str | os.PathLike) -> None:
    """Loads a whole-model checkpoint's backbone part, or a bare backbone file, into ``backbone``.

    Every backbone weight must be present (``'complete'`` mode of
    :func:`~mmreplk.utils.load_weights`, or the backbone's own
    :meth:`~mmreplk.models.backbones.base.LargeKernelBackbone.load_complete`: UniRepLKNet's
    ImageNet files have no ``norm0..3``, which keep their initial values); extra keys (heads, a
    classifier) are ignored.

    Args:
        backbone (nn.Module): Any backbone.
        checkpoint (str | os.PathLike): Whole-model checkpoint (``backbone.*`` keys) or a
            backbone state dict, read under the package's trust policy.
    """
    state_dict, _ = read_state_dict(checkpoint)
    backbone_part, _ = select_prefix(state_dict, 'backbone.')
    state_dict = backbone_part or state_dict
    if isinstance(backbone, LargeKernelBackbone):
        backbone.load_complete(state_dict, os.fspath(checkpoint))
    else:
        load_weights(backbone, state_dict, 'complete', os.fspath(checkpoint))


def contribution_map(backbone: nn.Module, image: torch.Tensor) -> np.ndarray:
    """Input-gradient map of the central output pixel of the backbone's last output.

    Args:
        backbone (nn.Module): A backbone in eval mode returning a feature map or a tuple of them.
        image (torch.Tensor): Normalized input (1, 3, H, W).

    Returns:
        np.ndarray: Map (H, W): ReLU of the gradient, summed over batch and channels.
    """
    image = image.detach().requires_grad_(True)
    outputs = backbone(image)
    last = outputs[-1] if isinstance(outputs, (tuple, list)) else outputs
    height, width = last.shape[2:]
    central = torch.relu(last[:, :, height // 2, width // 2]).sum()
    grad, = torch.autograd.grad(central, image)
    return torch.relu(grad).sum((0, 1)).double().cpu().numpy()


def compute_erf(config: str | os.PathLike | Config,
                image_dir: str | os.PathLike,
                checkpoint: str | os.PathLike | None = None,
                input_size: Sequence[int] = (1024, 1024),
                num_images: int = 50,
                device: str | torch.device = 'cpu') -> ERFResult:
    """Averages the contribution maps of a config's backbone over the images of a folder.

    Images are read in name order, resized (bicubic) to ``input_size`` and normalized by the
    model's data preprocessor; files that are not images are skipped and reported.

    Args:
        config (str | os.PathLike | Config): Any mmseg config (RepLKNet, ResNet, ...).
        image_dir (str | os.PathLike): Folder of images.
        checkpoint (str | os.PathLike, optional): Segmentor or backbone weights; None keeps
            the random initialization. Defaults to None.
        input_size (Sequence[int]): (H, W) fed to the backbone. Defaults to (1024, 1024), the
            paper's setting.
        num_images (int): Images to average. Defaults to 50, the paper's setting.
        device (str | torch.device): Device. Defaults to 'cpu'.

    Returns:
        ERFResult: The mean map, the number of images used and skipped files.
    """
    logger = MMLogger.get_current_instance()
    cfg = load_config(config)
    image_dir = Path(require_dir(image_dir, 'image folder'))
    model = build_model(cfg, device=device)
    backbone = model.backbone
    if checkpoint is not None:
        load_backbone_checkpoint(backbone, checkpoint)
    bgr_to_rgb, mean, std = input_normalization(model.data_preprocessor)
    height, width = input_size

    total = np.zeros((height, width))
    used, skipped = 0, []
    for path in sorted(p for p in image_dir.iterdir() if p.is_file()):
        if used == num_images:
            break
        try:
            image = read_image(path)
        except (ImageReadError, OSError) as err:
            skipped.append(f'{path.name} ({err})')
            continue
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
        tensor = torch.from_numpy(image.transpose(2, 0, 1).copy()).float().to(device)
        if bgr_to_rgb:
            tensor = tensor.flip(0)
        if mean is not None:
            tensor = (tensor - mean) / std
        scores = contribution_map(backbone, tensor[None])
        if np.isnan(scores).any():
            skipped.append(f'{path.name} (NaN gradient)')
            continue
        total += scores
        used += 1
    for item in skipped:
        logger.warning(f'ERF: skipped {item}')
    if used == 0:
        raise ToolError(f'no usable image in {image_dir}')
    if used < num_images:
        logger.warning(f'ERF: averaged {used} images, fewer than the {num_images} asked for')
    return ERFResult(total / used, used, skipped)


def format_area_ratios(ratios: Mapping[float, tuple[int, float] | None]) -> str:
    """The paper's table: threshold, square side and area ratio per line."""
    lines = ['threshold  side  area ratio']
    for thresh, found in ratios.items():
        side, ratio = found if found else ('-', float('nan'))
        lines.append(f'{thresh:>9}  {side:>4}  {ratio:10.4f}')
    return '\n'.join(lines)

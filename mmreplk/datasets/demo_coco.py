"""A small, seeded COCO-format instance-segmentation dataset that a detector can learn offline.

Each image holds a few non-overlapping objects on a noisy, smoothly shaded background. The class of
an object is its *shape* (square, disc, triangle); colour and texture (solid or striped) are drawn
independently of the class, so a model has to learn shape to score well. Every mask is stored as
the polygon that was rasterised into the image, so boxes, masks and pixels agree exactly.

The files follow the COCO 2017 layout, so the same configs and layout checks serve both::

    root/annotations/instances_train2017.json
    root/annotations/instances_val2017.json
    root/train2017/000001.png ...
    root/val2017/000001.png ...

``python tools/generate_demo_data.py coco data/demo_coco`` writes it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

#: Category names, in category-id order (ids start at 1 as in COCO).
DEMO_COCO_CLASSES = ('square', 'disc', 'triangle')

_SPLIT_SEED_OFFSETS = {'train': 0, 'val': 1}
_DISC_VERTICES = 32


@dataclasses.dataclass(frozen=True)
class DemoCocoFiles:
    """Paths written by :func:`generate_demo_coco`.

    Args:
        root (Path): Dataset root (``data_root`` in a config).
        train_ann (Path): Training annotation JSON.
        val_ann (Path): Validation annotation JSON.
        train_dir (Path): Training image folder.
        val_dir (Path): Validation image folder.
    """

    root: Path
    train_ann: Path
    val_ann: Path
    train_dir: Path
    val_dir: Path


def _shape_polygon(rng: np.random.Generator, category: str, center: np.ndarray,
                   radius: float) -> np.ndarray:
    """Vertices (N, 2) in (x, y) of one object, randomly rotated."""
    angle = rng.uniform(0, 2 * math.pi)
    if category == 'square':
        # A square's circumradius is its half-diagonal; scale so area is comparable to the disc.
        offsets = angle + np.arange(4) * math.pi / 2 + math.pi / 4
        r = radius * 1.1
    elif category == 'disc':
        offsets = angle + np.arange(_DISC_VERTICES) * 2 * math.pi / _DISC_VERTICES
        r = radius
    elif category == 'triangle':
        offsets = angle + np.arange(3) * 2 * math.pi / 3
        r = radius * 1.25
    else:
        raise ValueError(f'unknown demo category {category!r}; expected one of {DEMO_COCO_CLASSES}')
    return center + r * np.stack([np.cos(offsets), np.sin(offsets)], axis=1)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour gradient with pixel noise, uint8 BGR."""
    corners = rng.uniform(40, 215, size=(2, 2, 3)).astype(np.float32)
    smooth = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    noise = rng.normal(0, 12, size=(height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Fills ``mask`` in ``image`` with a random colour, solid or striped."""
    colour = rng.integers(0, 256, size=3)
    fill = np.empty_like(image)
    fill[:] = colour
    if rng.random() < 0.5:
        period = int(rng.integers(4, 9))
        yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
        direction = (xx + yy) if rng.random() < 0.5 else (xx - yy)
        stripes = (direction // (period // 2)) % 2 == 0
        fill[stripes] = 255 - colour
    image[mask] = fill[mask]


def _make_image(rng: np.random.Generator, height: int, width: int, max_objects: int,
                size_range: tuple[float, float]) -> tuple[np.ndarray, list[dict]]:
    image = _background(rng, height, width)
    objects: list[dict] = []
    occupied = np.zeros((height, width), dtype=bool)
    num_objects = int(rng.integers(1, max_objects + 1))
    for _ in range(num_objects * 20):  # rejection sampling for non-overlapping placements
        if len(objects) == num_objects:
            break
        label = int(rng.integers(len(DEMO_COCO_CLASSES)))
        radius = rng.uniform(*size_range) * min(height, width) / 2
        margin = radius * 1.3
        if 2 * margin >= min(height, width):
            continue
        center = np.array([rng.uniform(margin, width - margin),
                           rng.uniform(margin, height - margin)])
        polygon = np.round(_shape_polygon(rng, DEMO_COCO_CLASSES[label], center, radius), 1)
        # Rasterise exactly as COCO tools decode the stored polygon, so pixels and masks agree.
        rle = mask_utils.frPyObjects([polygon.reshape(-1).tolist()], height, width)
        canvas = mask_utils.decode(mask_utils.merge(rle))
        mask = canvas.astype(bool)
        # One pixel of clearance keeps neighbouring masks (and their boxes' edges) distinct.
        grown = cv2.dilate(canvas, np.ones((3, 3), np.uint8)).astype(bool)
        if (grown & occupied).any() or not mask.any():
            continue
        occupied |= mask
        _paint(rng, image, mask)
        objects.append(dict(label=label, polygon=polygon, mask=mask))
    return image, objects


def _annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    ys, xs = np.nonzero(obj['mask'])
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=obj['label'] + 1,
        segmentation=[[float(v) for v in obj['polygon'].reshape(-1)]],
        area=float(obj['mask'].sum()),
        bbox=[float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)],
        iscrowd=0)


def _write_split(root: Path, split: str, num_images: int, seed: int, image_size: tuple[int, int],
                 max_objects: int, size_range: tuple[float, float]) -> tuple[Path, Path]:
    rng = np.random.default_rng([seed, _SPLIT_SEED_OFFSETS[split]])
    image_dir = root / f'{split}2017'
    image_dir.mkdir(parents=True, exist_ok=True)
    height, width = image_size
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = _make_image(rng, height, width, max_objects, size_range)
        file_name = f'{image_id:06d}.png'
        if not cv2.imwrite(str(image_dir / file_name), image):
            raise OSError(f'could not write demo image {image_dir / file_name}')
        images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
        for obj in objects:
            annotations.append(_annotation(obj, len(annotations) + 1, image_id))
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(DEMO_COCO_CLASSES)]
    ann_file = root / 'annotations' / f'instances_{split}2017.json'
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(dict(images=images, annotations=annotations,
                                        categories=categories)))
    return ann_file, image_dir


def generate_demo_coco(root: str | Path,
                       num_train: int = 200,
                       num_val: int = 50,
                       image_size: tuple[int, int] = (128, 128),
                       max_objects: int = 3,
                       size_range: tuple[float, float] = (0.2, 0.4),
                       seed: int = 0) -> DemoCocoFiles:
    """Writes the demo COCO dataset under ``root``; the same arguments give identical files.

    Args:
        root (str | Path): Output folder, created if missing; files of the same names are
            overwritten.
        num_train (int): Training images. Defaults to 200.
        num_val (int): Validation images. Defaults to 50.
        image_size (tuple[int, int]): (height, width) of every image. Defaults to (128, 128).
        max_objects (int): Each image holds 1 to ``max_objects`` objects. Defaults to 3.
        size_range (tuple[float, float]): Object radius range as a fraction of half the
            shorter image side. Defaults to (0.2, 0.4).
        seed (int): Random seed. Defaults to 0.

    Returns:
        DemoCocoFiles: Where the annotation files and image folders are.

    Example:
        >>> import tempfile
        >>> files = generate_demo_coco(tempfile.mkdtemp(), num_train=4, num_val=2)
        >>> sorted(p.name for p in files.root.joinpath('annotations').iterdir())
        ['instances_train2017.json', 'instances_val2017.json']
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got {num_train} and {num_val}')
    if max_objects < 1:
        raise ValueError(f'max_objects must be >= 1, got {max_objects}')
    if not 0 < size_range[0] <= size_range[1] < 0.75:
        raise ValueError(f'size_range must satisfy 0 < low <= high < 0.75, got {size_range}')
    root = Path(root)
    train_ann, train_dir = _write_split(root, 'train', num_train, seed, image_size, max_objects,
                                        size_range)
    val_ann, val_dir = _write_split(root, 'val', num_val, seed, image_size, max_objects,
                                    size_range)
    return DemoCocoFiles(root=root, train_ann=train_ann, val_ann=val_ann, train_dir=train_dir,
                         val_dir=val_dir)

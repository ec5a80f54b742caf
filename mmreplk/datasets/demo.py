"""A small, deterministic segmentation dataset in ADE20K layout, for the offline demo and tests.

Each image is a "landscape": a sky region above a wavy horizon and a ground region below it,
with a few discs, squares and triangles on top. Every region and object gets a random colour from
the same distribution, so colour never gives the label away: the sky is told from the ground by
its position and texture (smooth gradient vs. stripes), and the objects from each other by shape
and surface pattern (discs are plain, squares checkered, triangles dotted).
As in ADE20K, label 0 means "unlabelled" (a thin ring around each object) and classes are 1..N,
which ``reduce_zero_label`` maps to 0..N-1 with 0 ignored.

``python tools/generate_demo_data.py ade20k data/demo_ade`` writes it.
"""
from __future__ import annotations

import pathlib

import cv2
import numpy as np

#: Class names in label order (label k + 1 in the PNGs, k after reduce_zero_label).
DEMO_CLASSES = ('sky', 'ground', 'disc', 'square', 'triangle')
DEMO_PALETTE = [[70, 130, 180], [140, 90, 40], [220, 20, 60], [0, 160, 80], [250, 200, 0]]
_MARKER = '.mmreplk_demo'
_RING = 2
# Circumradius factors that give a square and a triangle the mean area of a disc of the same
# draw (pi r^2 = 2 r'^2 = 3 sqrt(3) / 4 r''^2), so no shape class is rarer than another.
_EQUAL_AREA_SCALE = {
    3: 1.0,
    4: float(np.sqrt(np.pi / 2)),
    5: float(np.sqrt(4 * np.pi / (3 * np.sqrt(3)))),
}


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky and ground with random colours; returns the BGR float image and the label map."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(1, 3) * 2 * np.pi / size
    horizon = size * rng.uniform(0.35, 0.65) + size * 0.06 * np.sin(freq * xs + phase)
    is_sky = ys < horizon
    labels = np.where(is_sky, 1, 2).astype(np.uint8)

    sky_colour, ground_colour = rng.uniform(30, 225, size=(2, 3))
    gradient = (ys / size - 0.5)[..., None] * rng.uniform(-60, 60)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 12)
    stripes = np.sign(np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period))
    sky = sky_colour + gradient
    ground = ground_colour + stripes[..., None] * rng.uniform(20, 40)
    image = np.where(is_sky[..., None], sky, ground)
    return image, labels


def _shape_mask(rng: np.random.Generator, size: int, kind: int) -> np.ndarray:
    """A filled disc (kind 3), rotated square (4) or rotated triangle (5) at a random place.

    The three kinds are sized to the same mean area.
    """
    mask = np.zeros((size, size), np.uint8)
    radius = rng.uniform(0.11, 0.19) * size * _EQUAL_AREA_SCALE[kind]
    cx, cy = rng.uniform(radius, size - radius, size=2)
    if kind == 3:
        cv2.circle(mask, (round(cx), round(cy)), round(radius), 1, thickness=-1)
        return mask.astype(bool)
    corners = 4 if kind == 4 else 3
    angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _surface(kind: int, size: int) -> np.ndarray:
    """Brightness pattern of an object class: plain disc, checkered square, dotted triangle."""
    ys, xs = np.mgrid[0:size, 0:size]
    if kind == 4:
        return np.where((ys // 4 + xs // 4) % 2 == 0, 30.0, -30.0)
    if kind == 5:
        return np.where((ys % 5 < 2) & (xs % 5 < 2), 60.0, 0.0)
    return np.zeros((size, size))


def make_sample(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Draws one image and its ADE-convention label map.

    Args:
        rng (np.random.Generator): Source of randomness.
        size (int): Image side in pixels. Defaults to 128.

    Returns:
        tuple[np.ndarray, np.ndarray]: BGR uint8 image (size, size, 3) and uint8 labels
        (size, size) with 0 = unlabelled and 1..5 = :data:`DEMO_CLASSES`.
    """
    image, labels = _background(rng, size)
    ring_kernel = np.ones((2 * _RING + 1, 2 * _RING + 1), np.uint8)
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.integers(3, 6))
        mask = _shape_mask(rng, size, kind)
        ring = cv2.dilate(mask.astype(np.uint8), ring_kernel).astype(bool) & ~mask
        image[mask] = rng.uniform(30, 225, size=3) + _surface(kind, size)[mask][:, None]
        labels[ring] = 0
        labels[mask] = kind
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def generate_demo_dataset(root: str | pathlib.Path,
                          num_train: int = 240,
                          num_val: int = 40,
                          size: int = 128,
                          seed: int = 0) -> pathlib.Path:
    """Writes the demo dataset in ADE20K layout, replacing a previous demo dataset at ``root``.

    Layout: ``images/{training,validation}/demo_XXXXX.jpg`` and
    ``annotations/{training,validation}/demo_XXXXX.png``. The same arguments give the same files.

    Args:
        root (str | pathlib.Path): Dataset root (e.g. ``data/demo_ade``).
        num_train (int): Training images. Defaults to 240.
        num_val (int): Validation images. Defaults to 40.
        size (int): Image side in pixels. Defaults to 128.
        seed (int): Random seed. Defaults to 0.

    Returns:
        pathlib.Path: ``root``.

    Raises:
        FileExistsError: ``root`` holds files that this generator did not write.
    """
    root = pathlib.Path(root)
    if root.exists() and any(root.iterdir()) and not (root / _MARKER).exists():
        raise FileExistsError(f'{root} is not empty and was not written by the demo generator; '
                              f'refusing to overwrite it, choose another folder')
    rng = np.random.default_rng(seed)
    for split, count in (('training', num_train), ('validation', num_val)):
        for kind in ('images', 'annotations'):
            folder = root / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob('demo_*'):
                stale.unlink()
        for index in range(count):
            image, labels = make_sample(rng, size)
            name = f'demo_{index:05d}'
            cv2.imwrite(str(root / 'images' / split / f'{name}.jpg'), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(root / 'annotations' / split / f'{name}.png'), labels)
    (root / _MARKER).write_text(f'num_train={num_train} num_val={num_val} size={size} seed={seed}\n')
    return root


def majority_class_miou(annotation_dir: str | pathlib.Path,
                        num_classes: int = len(DEMO_CLASSES)) -> float:
    """mIoU (in %) of predicting the most frequent class everywhere, as mmseg's IoUMetric counts it.

    Intersections and unions are summed over all images; label 0 is ignored (ADE convention);
    classes absent from both prediction and ground truth do not count.

    Args:
        annotation_dir (str | pathlib.Path): Folder of ADE-convention label PNGs.
        num_classes (int): Number of classes. Defaults to the demo's.

    Returns:
        float: The baseline mIoU in percent.
    """
    counts = np.zeros(num_classes + 1, np.int64)
    for path in sorted(pathlib.Path(annotation_dir).glob('*.png')):
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        counts += np.bincount(labels.ravel(), minlength=num_classes + 1)[:num_classes + 1]
    class_counts = counts[1:]
    if class_counts.sum() == 0:
        raise ValueError(f'no labelled pixels found in {annotation_dir}')
    majority = int(class_counts.argmax())
    present = np.count_nonzero(class_counts)
    # The majority class's IoU is its share of labelled pixels; every other present class
    # scores 0 (it has ground truth but is never predicted).
    return 100.0 * class_counts[majority] / class_counts.sum() / present

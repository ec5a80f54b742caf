"""Folder inference shared by segmentation and detection.

:func:`infer_folder` walks a folder tree, decodes every file defensively, reports files that are
not usable images by name, and hands batches of images to a task-specific :class:`Predictor`
picked from the config's ``default_scope``. Outputs mirror the input tree under ``out_dir``.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import inspect
import io
import os
import pathlib
import sys
from collections.abc import Iterator

import cv2
import numpy as np
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.utils import ProgressBar
from PIL import Image, UnidentifiedImageError

from .config import load_config

#: Predictor class per config ``default_scope``, as import paths so that only the task in use
#: is imported (detection pulls in mmdet, segmentation mmseg).
PREDICTORS = {
    'mmseg': 'mmreplk.apis.seg_inference.SegPredictor',
    'mmdet': 'mmreplk.apis.det_inference.DetPredictor',
}


class Predictor(abc.ABC):
    """Task-specific half of folder inference: runs a model on images and writes its outputs.

    Args:
        cfg (Config): The model's config (with a top-level ``test_pipeline``).
        checkpoint (str): Local checkpoint path; loaded through mmengine, so under the
            checkpoint trust policy of :mod:`mmreplk.utils.checkpoint`.
        device (str): Torch device, e.g. 'cpu' or 'cuda:0'.
    """

    def __init__(self, cfg: Config, checkpoint: str, device: str) -> None:
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.device = device

    @abc.abstractmethod
    def predict(self, images: list[np.ndarray]) -> list:
        """Runs the model.

        Args:
            images (list[np.ndarray]): BGR uint8 images of shape (H, W, 3), sizes may differ.

        Returns:
            list: One result per image, in order.
        """

    @abc.abstractmethod
    def save(self, image: np.ndarray, result, out_stem: pathlib.Path) -> list[pathlib.Path]:
        """Writes the outputs for one image.

        Args:
            image (np.ndarray): The BGR uint8 image given to :meth:`predict`.
            result: Its entry in :meth:`predict`'s return value.
            out_stem (pathlib.Path): Output path without suffix; files are named
                ``out_stem`` + a suffix. Its parent folder exists.

        Returns:
            list[pathlib.Path]: The files written.
        """


class ImageReadError(ValueError):
    """A file could not be decoded as an image; the message says why."""


#: Default limit of :func:`read_image` on width x height (4096 x 4096). It bounds memory: a
#: segmentor's full-resolution logits take num_classes x 4 bytes per pixel (1.3 GB for 5 classes
#: at 8000 x 8000, 10 GB for ADE20K's 150 classes at this limit).
MAX_IMAGE_PIXELS = 4096 * 4096

# 16-bit RGBA stored uncompressed is the largest a pixel gets on disk.
_MAX_BYTES_PER_PIXEL = 8
_HEADER_SLACK = 1 << 20


@dataclasses.dataclass
class InferenceSummary:
    """What :func:`infer_folder` did.

    Args:
        out_dir (pathlib.Path): Where outputs were written.
        num_images (int): Images processed.
        num_outputs (int): Files written.
        skipped (list[tuple[pathlib.Path, str]]): Files that were not usable images, with the
            reason.
    """
    out_dir: pathlib.Path
    num_images: int = 0
    num_outputs: int = 0
    skipped: list[tuple[pathlib.Path, str]] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        """One-line summary for the user."""
        text = (f'{self.num_images} images processed, {self.num_outputs} files written to '
                f'{self.out_dir}, {len(self.skipped)} skipped')
        if self.skipped:
            text += ': ' + '; '.join(f'{path} ({reason})' for path, reason in self.skipped)
        return text


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes an image file into a BGR uint8 array, whatever its channels and bit depth.

    Grayscale becomes three channels, an alpha channel is dropped, 16-bit samples are scaled to
    8 bits, and EXIF orientation is applied. Images above ``max_pixels`` are refused from their
    header, before any pixel is decoded, and so are files too big to hold that many pixels.

    Args:
        path (str | os.PathLike): The file.
        max_pixels (int): Largest accepted width x height. Defaults to
            :data:`MAX_IMAGE_PIXELS`. Pillow's own decompression-bomb check still refuses
            images above twice ``PIL.Image.MAX_IMAGE_PIXELS`` (about 179 million).

    Returns:
        np.ndarray: Image of shape (H, W, 3), dtype uint8.

    Raises:
        ImageReadError: The file is empty, not an image, truncated or corrupt, too large, or
            of an unsupported pixel type.
    """
    path = pathlib.Path(path)
    num_bytes = path.stat().st_size
    if num_bytes == 0:
        raise ImageReadError('empty file')
    if num_bytes > max_pixels * _MAX_BYTES_PER_PIXEL + _HEADER_SLACK:
        raise ImageReadError(f'too large: {num_bytes} bytes, more than an image of {max_pixels} '
                             f'pixels can take')
    data = path.read_bytes()
    # OpenCV decodes a truncated JPEG without an error (grey bottom rows), so PIL, which
    # raises on truncation, vets the file first.
    try:
        with Image.open(io.BytesIO(data)) as pil_image:
            width, height = pil_image.size
            if width * height > max_pixels:
                raise ImageReadError(f'too large: {width}x{height} = {width * height} pixels, '
                                     f'more than the limit of {max_pixels}')
            pil_image.load()
            fallback_mode = pil_image.mode
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError('not an image (unrecognised format)') from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(f'too large ({err})') from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f'corrupt or truncated image ({err})') from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        # Formats PIL reads but this OpenCV build does not (e.g. GIF).
        with Image.open(io.BytesIO(data)) as pil_image:
            if fallback_mode in ('I', 'I;16', 'F'):
                raise ImageReadError(f'unsupported pixel type {fallback_mode!r}')
            image = cv2.cvtColor(np.asarray(pil_image.convert('RGB')), cv2.COLOR_RGB2BGR)
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
        image = image.astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f'unsupported pixel type {image.dtype}')
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ImageReadError(f'unexpected decoded shape {image.shape}')
    return np.ascontiguousarray(image)


def build_predictor(cfg: Config, checkpoint: str, device: str = 'cpu',
                    **options) -> Predictor:
    """Builds the :class:`Predictor` that fits the config's ``default_scope``.

    Args:
        cfg (Config): Model config.
        checkpoint (str): Local checkpoint path.
        device (str): Torch device. Defaults to 'cpu'.
        **options: Task-specific predictor arguments, e.g. ``score_thr`` for detection.

    Returns:
        Predictor: The task's predictor.
    """
    scope = cfg.get('default_scope')
    if scope not in PREDICTORS:
        raise ValueError(f'no folder-inference predictor for default_scope {scope!r}; '
                         f'supported: {sorted(PREDICTORS)}')
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
    module_name, class_name = PREDICTORS[scope].rsplit('.', 1)
    predictor_cls = getattr(importlib.import_module(module_name), class_name)
    accepted = inspect.signature(predictor_cls).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f'{unknown} do not apply to {scope} configs ({class_name})')
    return predictor_cls(cfg, checkpoint, device, **options)


def _walk_files(input_dir: pathlib.Path, skip: pathlib.Path) -> Iterator[tuple[pathlib.Path, str]]:
    """Yields (relative path, output stem name) for every file, in a stable order.

    The output stem is the file's stem, or its full name with dots replaced when two files of
    one folder share a stem (``a.jpg`` and ``a.png``), so that outputs never overwrite each other.
    """
    for root, dirs, files in os.walk(input_dir):
        root_path = pathlib.Path(root)
        dirs[:] = sorted(d for d in dirs if (root_path / d).resolve() != skip)
        stems = [pathlib.Path(name).stem for name in files]
        for name in sorted(files):
            stem = pathlib.Path(name).stem
            out_name = stem if stems.count(stem) == 1 else name.replace('.', '_')
            yield (root_path / name).relative_to(input_dir), out_name


def infer_folder(config: str | os.PathLike | Config,
                 checkpoint: str,
                 input_dir: str | os.PathLike,
                 out_dir: str | os.PathLike,
                 device: str = 'cpu',
                 batch_size: int = 1,
                 max_pixels: int = MAX_IMAGE_PIXELS,
                 predictor_options: dict | None = None) -> InferenceSummary:
    """Runs a model on every image of a folder tree and writes its outputs mirroring the tree.

    Every file is tried, whatever its extension; files that are not readable images are logged
    by name with the reason and skipped. Images are streamed ``batch_size`` at a time, so memory
    does not grow with the folder. ``out_dir`` is skipped if it lies inside ``input_dir``.

    Args:
        config (str | os.PathLike | Config): Model config (path or loaded).
        checkpoint (str): Local checkpoint path.
        input_dir (str | os.PathLike): Folder to process, with its subfolders.
        out_dir (str | os.PathLike): Output folder, created if needed.
        device (str): Torch device. Defaults to 'cpu'.
        batch_size (int): Images per forward pass. Defaults to 1.
        max_pixels (int): Larger images are skipped as too large, unread (see
            :func:`read_image`). Defaults to :data:`MAX_IMAGE_PIXELS`.
        predictor_options (dict, optional): Task-specific predictor arguments (see
            :func:`build_predictor`). Defaults to None.

    Returns:
        InferenceSummary: Counts and skipped files.
    """
    logger = MMLogger.get_current_instance()
    input_dir = pathlib.Path(input_dir)
    out_dir = pathlib.Path(out_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f'input folder not found: {input_dir}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be at least 1, got {batch_size}')
    cfg = config if isinstance(config, Config) else load_config(config)
    predictor = build_predictor(cfg, checkpoint, device, **(predictor_options or {}))
    out_dir.mkdir(parents=True, exist_ok=True)

    skip = out_dir.resolve()
    total = sum(1 for _ in _walk_files(input_dir, skip))
    summary = InferenceSummary(out_dir=out_dir)
    progress = ProgressBar(total, file=sys.stderr)
    batch: list[tuple[np.ndarray, pathlib.Path]] = []

    def flush() -> None:
        results = predictor.predict([image for image, _ in batch])
        for (image, out_stem), result in zip(batch, results):
            out_stem.parent.mkdir(parents=True, exist_ok=True)
            summary.num_outputs += len(predictor.save(image, result, out_stem))
            summary.num_images += 1
            progress.update()
        batch.clear()

    for rel_path, out_name in _walk_files(input_dir, skip):
        try:
            image = read_image(input_dir / rel_path, max_pixels)
        except (ImageReadError, OSError) as err:
            summary.skipped.append((rel_path, str(err)))
            progress.update()
            continue
        batch.append((image, out_dir / rel_path.parent / out_name))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    sys.stderr.write('\n')
    for path, reason in summary.skipped:
        logger.warning(f'skipped {input_dir / path}: {reason}')
    logger.info(summary.line())
    return summary

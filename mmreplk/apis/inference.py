"""Folder inference for every task.

:func:`infer_folder` walks a folder tree, decodes every file defensively, reports files that are
not usable images by name, and hands batches of images to the :class:`~mmreplk.tasks.Predictor`
of the config's task adapter. Outputs mirror the input tree under ``out_dir``.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import pathlib
import sys
from collections.abc import Iterator

import numpy as np
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.utils import ProgressBar

from mmreplk.tasks import MAX_IMAGE_PIXELS, ImageReadError, Predictor, read_image, task_adapter
from mmreplk.utils import ConfigError, ToolError, require_dir, require_file
from .config import load_config

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
    task = task_adapter(cfg, 'folder-inference predictor')
    require_file(checkpoint)
    accepted = inspect.signature(task.build_predictor).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f'{unknown} do not apply to {task.scope} configs '
                          f'({type(task).__name__})')
    return task.build_predictor(cfg, checkpoint, device, **options)


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
    require_dir(input_dir, 'input folder')
    if batch_size < 1:
        raise ToolError(f'batch_size must be at least 1, got {batch_size}')
    cfg = load_config(config)
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

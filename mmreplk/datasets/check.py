"""Reading every file of a config's datasets before training: what ``tools/check_dataset.py`` runs.

For each of the config's train/val/test sets (a set shared by two splits is read once), every
image is decoded the way the training pipeline decodes it (OpenCV), and every annotation checked
against it:

* segmentation (a dataset whose samples have a ``seg_map_path``): the label map decodes (Pillow,
  as mmseg's ``LoadAnnotations`` reads it), has the image's size, and holds only class indices or
  the ignore value 255 (``reduce_zero_label`` shifts the range by one);
* detection (COCO ``.json``, read directly: mmdet drops boxes of unknown categories without a
  word): every image's size equals the annotation's, every box lies inside its image, and every
  ``category_id`` is one of the config's classes.

Files are read by a pool of threads (decoding releases the GIL) behind a progress bar.
"""
from __future__ import annotations

import dataclasses
import json
import os
import os.path as osp
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import cv2
import numpy as np
from mmengine.config import Config
from mmengine.registry import DATASETS, init_default_scope
from mmengine.utils import ProgressBar
from PIL import Image

#: Label value every mmseg loss ignores.
IGNORE_INDEX = 255
_SPLITS = {'train': 'train_dataloader', 'val': 'val_dataloader', 'test': 'test_dataloader'}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One fault found in a dataset.

    Args:
        kind (str): 'unreadable', 'mis-sized' or 'labels'.
        path (str): The file at fault.
        detail (str): What is wrong.
    """
    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f'{self.kind:<10} {self.path}: {self.detail}'


@dataclasses.dataclass
class SplitReport:
    """What was found in one dataset.

    Args:
        splits (list[str]): The splits that use it, e.g. ['val', 'test'].
        dataset (str): Its type and root, for the report.
        samples (int): Samples checked.
        problems (list[Problem]): What was found, sorted by file.
    """
    splits: list[str]
    dataset: str
    samples: int
    problems: list[Problem]

    def render(self) -> str:
        """The report as text, one line per problem."""
        head = (f'{"/".join(self.splits)} ({self.dataset}): {self.samples} samples, '
                f'{len(self.problems) or "no"} problem{"" if len(self.problems) == 1 else "s"}')
        return '\n'.join([head, *(f'  {problem}' for problem in self.problems)])


def check_dataset(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test'),
                  workers: int | None = None, progress: bool = True) -> list[SplitReport]:
    """Reads every image and annotation of the config's datasets (see the module docstring).

    Args:
        cfg (Config): Full config (``custom_imports`` already imported, as ``Config.fromfile``
            does).
        splits (Sequence[str]): Which of 'train', 'val', 'test' to check. Defaults to all.
        workers (int, optional): Reading threads. Defaults to the number of CPUs.
        progress (bool): Show a progress bar on stderr. Defaults to True.

    Returns:
        list[SplitReport]: One report per distinct dataset.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    reports: list[SplitReport] = []
    seen: dict[str, SplitReport] = {}
    for split in splits:
        if split not in _SPLITS:
            raise ValueError(f'unknown split {split!r}; choose from {tuple(_SPLITS)}')
        loader = cfg.get(_SPLITS[split])
        if not loader or 'dataset' not in loader:
            continue
        key = repr(loader.dataset)
        if key in seen:
            seen[key].splits.append(split)
            continue
        dataset = _unwrap(DATASETS.build(dict(loader.dataset, pipeline=[])))
        tasks, name = _tasks(dataset)
        report = SplitReport([split], name, len(tasks), _run(tasks, workers, progress))
        seen[key] = report
        reports.append(report)
    return reports


def _unwrap(dataset: object) -> object:
    """The dataset inside wrappers (RepeatDataset, SkipBadSamples, ...): they hold it as
    ``dataset``, which a dataset itself has not."""
    while 'dataset' in vars(dataset):
        dataset = dataset.dataset
    return dataset


def _tasks(dataset) -> tuple[list[Callable[[], list[Problem]]], str]:
    """One check per sample, and the dataset's name for the report."""
    name = f'{type(dataset).__name__} in {getattr(dataset, "data_root", "") or "."}'
    classes = list(dataset.metainfo.get('classes', ()))
    ann_file = getattr(dataset, 'ann_file', '')
    if str(ann_file).endswith('.json'):
        return _coco_tasks(dataset, ann_file, classes), name
    reduce_zero_label = bool(getattr(dataset, 'reduce_zero_label', False))
    tasks = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        tasks.append(_bind(_check_segmentation_sample, info['img_path'],
                           info.get('seg_map_path'), len(classes), reduce_zero_label))
    return tasks, name


def _bind(function: Callable, *args) -> Callable[[], list[Problem]]:
    return lambda: function(*args)


def _run(tasks: list[Callable[[], list[Problem]]], workers: int | None,
         progress: bool) -> list[Problem]:
    problems: list[Problem] = []
    bar = ProgressBar(len(tasks), file=sys.stderr) if progress and tasks else None
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for future in as_completed([pool.submit(task) for task in tasks]):
            problems += future.result()
            if bar is not None:
                bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return sorted(problems, key=lambda problem: (problem.path, problem.kind))


def read_image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image decoded as the training pipeline decodes it (OpenCV).

    Raises:
        OSError: The file cannot be read or decoded.
    """
    with open(path, 'rb') as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise OSError('not a decodable image')
    return image.shape[:2]


def _check_segmentation_sample(img_path: str, seg_path: str | None, num_classes: int,
                               reduce_zero_label: bool) -> list[Problem]:
    problems = []
    try:
        size = read_image_size(img_path)
    except OSError as err:
        problems.append(Problem('unreadable', img_path, err.strerror or str(err)))
        size = None
    if seg_path is None:
        return problems
    try:
        with Image.open(seg_path) as label_file:
            labels = np.asarray(label_file)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        return problems + [Problem('unreadable', seg_path, str(err) or type(err).__name__)]
    if size is not None and labels.shape[:2] != tuple(size):
        problems.append(Problem('mis-sized', seg_path, f'{labels.shape[1]}x{labels.shape[0]} '
                                f'label map for a {size[1]}x{size[0]} image {img_path}'))
    if labels.ndim != 2:
        return problems + [Problem('labels', seg_path, f'{labels.ndim}-d label map with shape '
                                   f'{labels.shape}; a label map holds one class index per pixel')]
    valid = set(range(1, num_classes + 1)) | {0} if reduce_zero_label else set(range(num_classes))
    outside = sorted(set(np.unique(labels).tolist()) - valid - {IGNORE_INDEX})
    if num_classes and outside:
        low, high = (0, num_classes) if reduce_zero_label else (0, num_classes - 1)
        shown = ', '.join(map(str, outside[:8])) + (', ...' if len(outside) > 8 else '')
        problems.append(Problem('labels', seg_path, f'values {shown} outside {low}-{high} and '
                                f'{IGNORE_INDEX} ({num_classes} classes'
                                f'{", reduce_zero_label" if reduce_zero_label else ""})'))
    return problems


def _coco_tasks(dataset, ann_file: str, classes: list[str]) -> list[Callable[[], list[Problem]]]:
    with open(ann_file, encoding='utf-8') as f:
        coco = json.load(f)
    known = {cat['id'] for cat in coco.get('categories', []) if cat.get('name') in classes}
    by_image: dict[int, list[dict]] = {}
    for ann in coco.get('annotations', []):
        by_image.setdefault(ann.get('image_id'), []).append(ann)
    prefix = dataset.data_prefix.get('img', '') if isinstance(dataset.data_prefix, dict) else ''
    return [_bind(_check_coco_image, osp.join(prefix, image['file_name']), image,
                  by_image.get(image['id'], []), known, ann_file)
            for image in coco.get('images', [])]


def _check_coco_image(img_path: str, image: dict, annotations: Iterable[dict], known: set,
                      ann_file: str) -> list[Problem]:
    problems = []
    height, width = image.get('height'), image.get('width')
    try:
        size = read_image_size(img_path)
        if (height, width) != tuple(size):
            problems.append(Problem('mis-sized', img_path, f'{size[1]}x{size[0]} image, '
                                    f'{width}x{height} in {osp.basename(ann_file)}'))
    except OSError as err:
        problems.append(Problem('unreadable', img_path, err.strerror or str(err)))
    for ann in annotations:
        if ann.get('category_id') not in known:
            problems.append(Problem('labels', img_path, f'annotation {ann.get("id")} has '
                                    f'category_id {ann.get("category_id")}, not one of the '
                                    f'config\'s classes (mmdet drops it silently)'))
        x, y, w, h = ann.get('bbox', (0, 0, 0, 0))
        if width and height and (x < 0 or y < 0 or x + w > width + 1 or y + h > height + 1):
            problems.append(Problem('mis-sized', img_path, f'annotation {ann.get("id")}: box '
                                    f'{[x, y, w, h]} (x, y, w, h) outside the {width}x{height} '
                                    f'image'))
    return problems

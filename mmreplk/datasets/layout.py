"""Checks that a config's datasets are on disk before a Runner is built.

mmseg/mmdet fail late and cryptically on a missing dataset (an empty dataset, or a traceback from
inside a dataloader worker). :func:`check_dataset_layout` instead stops with one message naming
the missing path, the layout expected there and how to prepare it. What to expect is a table,
:data:`DATASET_LAYOUTS`, keyed by dataset ``type``; add an entry to cover another dataset.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import os.path as osp
from collections.abc import Iterable, Iterator, Mapping

from mmreplk.utils import UserError


@dataclasses.dataclass(frozen=True)
class DatasetLayout:
    """What a dataset type expects under its ``data_root``.

    Args:
        tree (str): The expected folder tree, as shown to the user.
        prepare (str): How to obtain or convert the data.
        mmseg_converter (str, optional): Converter script shipped in mmseg's wheel
            (``tools/dataset_converters/<name>``) and its arguments, shown with its installed
            path. Defaults to None.
    """
    tree: str
    prepare: str
    mmseg_converter: str | None = None

    def instructions(self) -> str:
        """How to prepare the dataset, with the converter's installed path if there is one."""
        if self.mmseg_converter is None:
            return self.prepare
        spec = importlib.util.find_spec('mmseg')
        folder = (osp.join(osp.dirname(spec.origin), '.mim', 'tools', 'dataset_converters')
                  if spec is not None and spec.origin else 'mmsegmentation/tools/dataset_converters')
        return f'{self.prepare}; mmseg\'s converter: python {osp.join(folder, self.mmseg_converter)}'


#: Expected layouts per dataset type (the ``type`` in a dataloader's ``dataset`` config).
DATASET_LAYOUTS: dict[str, DatasetLayout] = {
    'ADE20KDataset': DatasetLayout(
        tree=('ADEChallengeData2016/\n'
              '  images/training/*.jpg        annotations/training/*.png\n'
              '  images/validation/*.jpg      annotations/validation/*.png'),
        prepare=('download ADEChallengeData2016.zip (http://sceneparsing.csail.mit.edu) and '
                 'unzip it into data/ade (the zip already has this layout; no conversion is '
                 'needed), or point every dataloader at your copy: --cfg-options '
                 'train_dataloader.dataset.data_root=PATH val_dataloader.dataset.data_root=PATH '
                 'test_dataloader.dataset.data_root=PATH')),
    'CityscapesDataset': DatasetLayout(
        tree=('cityscapes/\n'
              '  leftImg8bit/{train,val}/<city>/*_leftImg8bit.png\n'
              '  gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png'),
        prepare=('download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from '
                 'https://www.cityscapes-dataset.com, unzip both into data_root (default '
                 'data/cityscapes) and create the *_labelTrainIds.png files'),
        mmseg_converter='cityscapes.py data/cityscapes --nproc 8'),
    'ReplkShapesDataset': DatasetLayout(
        tree=('demo_ade/\n'
              '  images/training/*.jpg        annotations/training/*.png\n'
              '  images/validation/*.jpg      annotations/validation/*.png'),
        prepare='generate it with: python tools/generate_demo_data.py ade20k data/demo_ade'),
    'CocoDataset': DatasetLayout(
        tree=('coco/\n'
              '  annotations/instances_train2017.json\n'
              '  annotations/instances_val2017.json\n'
              '  train2017/*.jpg\n'
              '  val2017/*.jpg'),
        prepare=('download train2017.zip, val2017.zip and annotations_trainval2017.zip from '
                 'https://cocodataset.org/#download and unzip all three into data/coco (the '
                 'zips already have this layout), or point the dataloaders and the evaluators '
                 'at your copy: --cfg-options train_dataloader.dataset.data_root=PATH '
                 'val_dataloader.dataset.data_root=PATH test_dataloader.dataset.data_root=PATH '
                 'val_evaluator.ann_file=PATH/annotations/instances_val2017.json '
                 'test_evaluator.ann_file=PATH/annotations/instances_val2017.json; for the '
                 'offline demo: python tools/generate_demo_data.py coco data/demo_coco')),
}

#: Config keys of wrapper datasets that hold the real dataset(s).
_WRAPPED = ('dataset', 'datasets')


class DatasetLayoutError(UserError, FileNotFoundError):
    """A dataset path is missing or empty; the message explains the expected layout."""


def _leaf_datasets(cfg: Mapping) -> Iterator[Mapping]:
    for key in _WRAPPED:
        inner = cfg.get(key)
        if isinstance(inner, Mapping):
            yield from _leaf_datasets(inner)
            return
        if isinstance(inner, (list, tuple)):
            for item in inner:
                yield from _leaf_datasets(item)
            return
    yield cfg


def _required_paths(dataset: Mapping) -> Iterator[tuple[str, bool]]:
    """Yields (path, is_folder) that ``dataset`` reads, data_root first."""
    root = dataset.get('data_root') or ''
    if root:
        yield root, True
    ann_file = dataset.get('ann_file') or ''
    if ann_file:
        yield osp.join(root, ann_file), False
    prefix = dataset.get('data_prefix') or {}
    for value in prefix.values():
        if value:
            yield osp.join(root, value), True


def _problem(path: str, is_folder: bool) -> str | None:
    if is_folder:
        if not osp.isdir(path):
            return 'does not exist' if not osp.exists(path) else 'is not a folder'
        try:
            with os.scandir(path) as entries:
                if next(entries, None) is None:
                    return 'is empty'
        except PermissionError:
            return 'cannot be read (permission denied)'
        return None
    return None if osp.isfile(path) else 'does not exist'


def check_dataset_layout(cfg: Mapping, splits: Iterable[str] = ('train', 'val', 'test')) -> None:
    """Raises one clear error if a dataset the config will read is not on disk.

    Datasets whose type has no entry in :data:`DATASET_LAYOUTS` are not checked. Wrapper
    datasets (``RepeatDataset``, ``ConcatDataset``, ...) are looked through.

    Args:
        cfg (Mapping): A full config with ``<split>_dataloader`` entries.
        splits (Iterable[str]): Which dataloaders to check; absent ones are skipped.
            Defaults to ('train', 'val', 'test').

    Raises:
        DatasetLayoutError: Names the missing path, the expected layout and how to prepare it.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            continue
        for dataset in _leaf_datasets(loader['dataset']):
            layout = DATASET_LAYOUTS.get(dataset.get('type'))
            if layout is None:
                continue
            for path, is_folder in _required_paths(dataset):
                problem = _problem(path, is_folder)
                if problem:
                    raise DatasetLayoutError(
                        f'{dataset["type"]} for {split}_dataloader: {path} {problem}.\n'
                        f'Expected layout under data_root ({dataset.get("data_root")}):\n'
                        f'{layout.tree}\n'
                        f'To prepare it: {layout.instructions()}')

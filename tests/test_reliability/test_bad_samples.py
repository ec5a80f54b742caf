"""Unreadable files in the training set: skipped with one warning each, replaced so batches keep
their size, and a stop with the list once there are too many."""
import logging
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DATASETS, init_default_scope

from mmreplk.datasets import BadSamplesError, SkipBadSamples, generate_demo_dataset
from .test_resume import _Records

DEMO = Path(__file__).resolve().parents[2] / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp('data') / 'demo_ade', num_train=240,
                                 num_val=2, size=32)


def _corrupt(root, indices, folder='training'):
    """Overwrites images with random bytes (as a failed copy or a bad disk would)."""
    paths = [root / 'images' / folder / f'demo_{index:05d}.jpg' for index in indices]
    originals = {path: path.read_bytes() for path in paths}
    for path in paths:
        path.write_bytes(os.urandom(len(originals[path])))
    return originals


def _guarded(root, fraction=0.01):
    import mmreplk.datasets.shapes_dataset  # noqa: F401 -- registers the dataset (mmseg)
    init_default_scope('mmseg')
    return SkipBadSamples(dict(type='ReplkShapesDataset', data_root=str(root),
                               data_prefix=dict(img_path='images/training',
                                                seg_map_path='annotations/training'),
                               pipeline=PIPELINE), max_bad_fraction=fraction)


@pytest.fixture
def one_corrupt(demo_root):
    originals = _corrupt(demo_root, [5])
    yield demo_root
    for path, data in originals.items():
        path.write_bytes(data)


@pytest.fixture
def ten_percent_corrupt(demo_root):
    originals = _corrupt(demo_root, range(3, 240, 10))
    yield demo_root
    for path, data in originals.items():
        path.write_bytes(data)


def test_one_corrupt_file_in_240_is_skipped_with_one_warning(one_corrupt):
    dataset = _guarded(one_corrupt)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=pseudo_collate)
    with _Records() as records:
        batches = [batch for _ in range(2) for batch in loader]  # two epochs
    assert all(len(batch['inputs']) == 8 for batch in batches)
    warnings = [message for level, message in records.messages if level == logging.WARNING]
    assert len(warnings) == 1
    assert 'demo_00005.jpg' in warnings[0] and 'cannot be read' in warnings[0]
    # The replacement is the next sample: no generator is drawn from, a resume stays exact.
    paths = [sample.img_path for batch in batches[:1] for sample in batch['data_samples']]
    assert [os.path.basename(p) for p in paths].count('demo_00006.jpg') == 2


def test_ten_percent_corrupt_files_stop_the_run_with_the_list(ten_percent_corrupt):
    dataset = _guarded(ten_percent_corrupt)
    with pytest.raises(BadSamplesError) as error:
        for index in range(len(dataset)):
            dataset[index]
    message = str(error.value)
    assert message.startswith('3 of 24 samples could not be read, more than '
                              'max_bad_sample_fraction=0.01')
    assert 'tools/check_dataset.py' in message
    for index in (3, 13, 23):
        assert f'images/training/demo_{index:05d}.jpg' in message


def test_the_stop_from_a_worker_keeps_only_its_message(ten_percent_corrupt):
    loader = torch.utils.data.DataLoader(_guarded(ten_percent_corrupt), batch_size=8,
                                         num_workers=1, collate_fn=pseudo_collate)
    with pytest.raises(BadSamplesError) as error:
        list(loader)
    message = str(error.value)
    assert message.startswith('3 of 24 samples could not be read') and 'Traceback' not in message


def test_the_wrapper_looks_like_the_dataset_it_wraps(demo_root):
    dataset = _guarded(demo_root)
    assert len(dataset) == 240
    assert dataset.metainfo['classes'] == dataset.dataset.metainfo['classes']
    assert dataset.get_data_info(0)['img_path'].endswith('demo_00000.jpg')
    assert len(pickle.loads(pickle.dumps(dataset))) == 240  # what worker processes receive
    assert DATASETS.get('SkipBadSamples') is SkipBadSamples


def test_train_guards_the_training_set_once_and_can_be_turned_off():
    from mmengine.config import Config

    from mmreplk.datasets import guard_train_dataset
    dataset = dict(type='ReplkShapesDataset', data_root='d')
    cfg = guard_train_dataset(Config(dict(train_dataloader=dict(dataset=dataset),
                                          val_dataloader=dict(dataset=dataset),
                                          max_bad_sample_fraction=0.05)))
    assert cfg.train_dataloader.dataset == dict(type='SkipBadSamples', dataset=dataset,
                                                max_bad_fraction=0.05)
    assert guard_train_dataset(cfg).train_dataloader.dataset.dataset == dataset  # not twice
    off = guard_train_dataset(Config(dict(train_dataloader=dict(dataset=dataset),
                                          max_bad_sample_fraction=None)))
    assert off.train_dataloader.dataset == dataset


@pytest.mark.parametrize('batch_size', [1, 4])
def test_test_evaluates_what_it_read_and_names_what_it_skipped(tmp_path, batch_size):
    from mmengine.config import Config
    from mmseg.registry import MODELS

    from mmreplk.apis import test
    root = generate_demo_dataset(tmp_path / 'data', num_train=2, num_val=4, size=32)
    cfg = Config.fromfile(DEMO)
    init_default_scope('mmseg')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), tmp_path / 'model.pth')
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': str(root),
                         'test_dataloader.batch_size': batch_size,
                         'max_bad_sample_fraction': 0.3})  # 1 in 4 is a share here
    cfg.load_from, cfg.work_dir = str(tmp_path / 'model.pth'), str(tmp_path / 'work')
    _corrupt(root, [2], folder='validation')

    metrics = test(cfg)

    assert metrics['skipped_samples'] == 1
    [log] = (tmp_path / 'work').rglob('*.log')  # the Runner's own logger writes it
    [summary] = [line.split(' - WARNING - ')[1] for line in log.read_text().splitlines()
                 if ' - WARNING - evaluated' in line]
    assert summary.startswith('evaluated 3 of 4 samples; skipped 1 that cannot be read: ')
    assert 'validation/demo_00002.jpg' in summary
    assert re.search(r'Iter\(test\) .*mIoU: [0-9.]+ .*skipped_samples: 1', log.read_text())
    assert 0 <= metrics['mIoU'] <= 100

"""Tiny trained-looking checkpoints of the test configs, shared by the deployment tests."""
from pathlib import Path

import pytest
import torch
from helpers import randomize_bn_stats
from mmengine.config import Config

from mmreplk.tasks import build_model

CONFIGS = Path(__file__).parents[1] / 'data' / 'configs'
SEG_CONFIG = CONFIGS / 'tiny_upernet_replknet.py'
DET_CONFIG = CONFIGS / 'tiny_cascade_replknet.py'
CLASSES = ('sky', 'road', 'tree', 'car', 'person')


def write_checkpoint(config: Path, path: Path, seed: int = 0) -> Path:
    """Saves a randomly initialized model with random BN statistics, laid out like a runner's."""
    torch.manual_seed(seed)
    model = build_model(Config.fromfile(str(config)))
    randomize_bn_stats(model)
    torch.save({'meta': {'dataset_meta': {'classes': CLASSES}, 'iter': 100},
                'state_dict': model.state_dict()}, path)
    return path


@pytest.fixture(scope='session')
def seg_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(SEG_CONFIG, tmp_path_factory.mktemp('seg') / 'iter_100.pth')


@pytest.fixture(scope='session')
def det_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(DET_CONFIG, tmp_path_factory.mktemp('det') / 'epoch_1.pth')

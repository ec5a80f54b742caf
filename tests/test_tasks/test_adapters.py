"""Task adapters: chosen from default_scope, one build path for every task, and a third task
that needs nothing but its own adapter."""
import json

import numpy as np
import pytest
import torch
from helpers import load_tool
from mmengine.config import Config
from mmengine.registry import MODELS
from torch import nn

from mmreplk.tasks import (TASK_ADAPTERS, DetectionTask, Predictor, SegmentationTask, TaskAdapter,
                           task_adapter)
from mmreplk.utils import CheckpointMismatchError, ConfigError


@MODELS.register_module()
class ToyColourModel(nn.Module):
    """Scores each image by a learned weighting of its mean colour."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean((2, 3)) @ self.weight


class ToyPredictor(Predictor):
    def __init__(self, cfg, checkpoint, device):
        super().__init__(cfg, checkpoint, device)
        task = task_adapter(cfg)
        self.model = task.build_model(cfg, checkpoint, device=device)
        self.classes = task.dataset_meta(cfg, self.model)['classes']

    def predict(self, images):
        batch = torch.from_numpy(np.stack([image.transpose(2, 0, 1) for image in images]))
        with torch.no_grad():
            return self.model(batch).tolist()

    def save(self, image, result, out_stem):
        path = out_stem.with_name(out_stem.name + '_toy.json')
        path.write_text(json.dumps(dict(score=result, label=self.classes[int(result > 100)])))
        return [path]


class ToyTask(TaskAdapter):
    """The whole of a third task: only folder inference."""

    task = 'toy scoring'

    def build_predictor(self, cfg, checkpoint, device):
        return ToyPredictor(cfg, checkpoint, device)


@pytest.fixture
def toy_scope():
    TASK_ADAPTERS.register_module('toy', module=ToyTask)
    yield
    TASK_ADAPTERS.module_dict.pop('toy')


def test_the_scope_chooses_the_adapter():
    assert isinstance(task_adapter(Config(dict(default_scope='mmseg'))), SegmentationTask)
    assert isinstance(task_adapter('mmdet'), DetectionTask)
    assert task_adapter('mmdet').scope == 'mmdet'
    with pytest.raises(ConfigError, match="no FLOP counting for default_scope 'mmpretrain'.*"
                       'mmseg or mmdet'):
        task_adapter(Config(dict(default_scope='mmpretrain')), 'FLOP counting')
    with pytest.raises(ConfigError, match='default_scope None'):
        task_adapter(Config(dict(model=dict())))


def test_a_third_task_runs_through_tools_infer(toy_scope, tmp_path):
    config = tmp_path / 'toy.py'
    config.write_text("default_scope = 'toy'\nmodel = dict(type='ToyColourModel')\n")
    torch.save(dict(meta=dict(dataset_meta=dict(classes=['dark', 'bright'])),
                    state_dict=dict(weight=torch.tensor([1.0, 0.0, 0.0]))),
               tmp_path / 'toy.pth')
    images = tmp_path / 'images'
    images.mkdir()
    for name, value in (('dark.png', 20), ('bright.png', 200)):
        import cv2
        cv2.imwrite(str(images / name), np.full((8, 8, 3), value, np.uint8))

    status = load_tool('infer.py').main([str(config), str(tmp_path / 'toy.pth'), str(images),
                                         '--out-dir', str(tmp_path / 'out')])

    assert status == 0
    results = {path.name: json.loads(path.read_text())
               for path in (tmp_path / 'out').glob('*_toy.json')}
    assert results == {'bright_toy.json': dict(score=200.0, label='bright'),
                       'dark_toy.json': dict(score=20.0, label='dark')}


def test_a_third_task_reports_what_it_does_not_support(toy_scope, tmp_path):
    task = task_adapter('toy')
    with pytest.raises(ConfigError, match="ONNX export is not available for toy scoring configs "
                       r"\(default_scope 'toy'\)"):
        task.export_graph(nn.Identity())
    load_tool('infer.py')  # the tool module loads without the task
    with pytest.raises(SystemExit) as exit_status:
        load_tool('test.py').main([str(tmp_path / 'missing.py'), 'x.pth'])
    assert exit_status.value.code == 1


def test_one_build_path_loads_weights_exactly(toy_scope, tmp_path):
    cfg = Config(dict(default_scope='toy', model=dict(type='ToyColourModel')))
    torch.save(dict(state_dict=dict(weight=torch.ones(4))), tmp_path / 'wide.pth')
    with pytest.raises(CheckpointMismatchError, match='does not fit the model of the config.*'
                       'shape mismatches'):
        task_adapter(cfg).build_model(cfg, tmp_path / 'wide.pth')
    model = task_adapter(cfg).build_model(cfg, tmp_path / 'wide.pth', strict='lenient')
    assert not model.training and torch.equal(model.weight, torch.zeros(3))

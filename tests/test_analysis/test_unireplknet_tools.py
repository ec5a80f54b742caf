"""The analysis and deployment tools accept UniRepLKNet configs (the tiny demo ones): FLOPs,
ERF, ONNX export and the whole-model benchmark."""
import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmreplk.analysis import (benchmark_model, compute_erf, get_model_complexity,
                              load_backbone_checkpoint)
from mmreplk.datasets import generate_demo_dataset
from mmreplk.deployment import export_onnx, reparameterize_checkpoint
from mmreplk.models import UniRepLKNet, reparameterize
from mmreplk.tasks import build_model
from mmreplk.utils import CheckpointMismatchError

DEMO = Path(__file__).parents[2] / 'configs' / 'demo'
SEG = DEMO / 'upernet_unireplknet_tiny_demo.py'
DET = DEMO / 'cascade_mask_rcnn_unireplknet_tiny_demo.py'


@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory):
    """A training-form checkpoint of the tiny demo segmentor with non-trivial BN statistics."""
    model = build_model(Config.fromfile(SEG))
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    path = tmp_path_factory.mktemp('ckpt') / 'seg.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@pytest.mark.parametrize('config', [SEG, DET], ids=['upernet', 'cascade'])
def test_flops_count_the_folded_model(config):
    result = get_model_complexity(config, shape=(128, 128), deploy=True)
    model = build_model(Config.fromfile(config))
    assert isinstance(model.backbone, UniRepLKNet)
    folded = reparameterize(copy.deepcopy(model.backbone))
    assert result.components['backbone'][0] == sum(p.numel() for p in folded.parameters())
    assert result.components['backbone'][1] > 0 and result.flops > result.components['backbone'][1]
    trained = get_model_complexity(config, shape=(128, 128), deploy=False)
    # The dilated branches and BNs of the training form cost FLOPs that folding removes.
    assert trained.components['backbone'][1] > result.components['backbone'][1]


@pytest.mark.skipif(importlib.util.find_spec('onnxruntime') is None,
                    reason='onnx / onnxruntime are not installed (pip install -e .[onnx])')
@pytest.mark.parametrize('folded_first', [False, True])
def test_onnx_export_matches_pytorch(seg_checkpoint, tmp_path, folded_first):
    checkpoint = seg_checkpoint
    if folded_first:
        checkpoint = reparameterize_checkpoint(SEG, seg_checkpoint, tmp_path / 'd.pth').out
    result = export_onnx(SEG, checkpoint, tmp_path / 'model.onnx', shape=(64, 96))
    assert result.max_abs_output > 0
    assert result.max_abs_diff <= result.rtol * result.max_abs_output


def test_erf_of_the_unireplknet_backbone(seg_checkpoint, tmp_path):
    root = generate_demo_dataset(tmp_path / 'ade', num_train=1, num_val=2, size=64, seed=3)
    result = compute_erf(SEG, root / 'images' / 'validation', checkpoint=seg_checkpoint,
                         input_size=(96, 96), num_images=2)
    assert result.num_images == 2 and result.scores.shape == (96, 96)
    assert np.isfinite(result.scores).all() and result.scores.max() > 0
    assert result.area_ratios()[0.99] is not None


def test_whole_model_benchmark_times_both_forms():
    timings = benchmark_model(SEG, shape=(64, 64), deploy=True, warmup=1, runs=1, device='cpu')
    assert [t.label for t in timings] == ['train', 'deploy']
    assert all(len(t.seconds) == 1 and t.seconds[0] > 0 for t in timings)


def test_erf_loads_an_imagenet_style_file_without_the_output_norms(seg_checkpoint, tmp_path):
    """The authors' ImageNet files hold no norm0..3 (added downstream) but a classifier; every
    other missing weight is still refused."""
    state_dict = torch.load(seg_checkpoint)['state_dict']
    backbone = {key.removeprefix('backbone.'): value for key, value in state_dict.items()
                if key.startswith('backbone.') and not key.startswith('backbone.norm')}
    backbone.update({'norm.weight': torch.ones(128), 'head.weight': torch.zeros(1000, 128)})
    torch.save({'model': backbone}, tmp_path / 'in1k.pth')
    model = build_model(Config.fromfile(SEG)).backbone
    load_backbone_checkpoint(model, tmp_path / 'in1k.pth')
    key = 'stages.2.1.dwconv.weight'
    assert torch.equal(model.state_dict()[key], backbone[key])
    assert torch.equal(model.norm3.weight, torch.ones(128))

    del backbone[key]
    torch.save({'model': backbone}, tmp_path / 'broken.pth')
    with pytest.raises(CheckpointMismatchError, match=key.replace('.', r'\.')):
        load_backbone_checkpoint(build_model(Config.fromfile(SEG)).backbone,
                                 tmp_path / 'broken.pth')

"""Folding a whole segmentor / detector with a UniRepLKNet backbone leaves its outputs unchanged."""
from pathlib import Path

import torch
from helpers import assert_close_relative
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn
from unireplknet_reference import randomize

from mmreplk import reparameterize
from mmreplk.models import UniRepLKNet

CONFIGS = Path(__file__).parents[1] / 'data' / 'configs'
FOLDED_AWAY = ('origin_bn', 'dil_conv', 'dil_bn', 'pwconv2.2', 'act.1.beta')


def build(config, dtype):
    cfg = Config.fromfile(str(CONFIGS / config))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    return randomize(model).to(dtype).eval()


def flatten(outputs):
    if torch.is_tensor(outputs):
        return [outputs]
    return [t for item in outputs for t in flatten(item)]


def assert_folded_equal(model, run, rel):
    with torch.no_grad():
        expected = flatten(run(model))
        reparameterize(model)
        folded = flatten(run(model))
    assert isinstance(model.backbone, UniRepLKNet) and model.backbone.deploy
    assert not any(part in key for key in model.state_dict() for part in FOLDED_AWAY)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for m in model.backbone.modules())
    assert len(folded) == len(expected) > 0
    for out, ref in zip(folded, expected):
        assert_close_relative(out, ref, rel=rel)


def test_upernet_folds_exactly_in_float64():
    model = build('tiny_upernet_unireplknet.py', torch.float64)
    inputs = torch.randn(2, 3, 64, 80, dtype=torch.float64)
    assert_folded_equal(model, lambda m: m(inputs, mode='tensor'), rel=1e-10)


def test_cascade_mask_rcnn_features_fold_exactly_in_float64():
    model = build('tiny_cascade_unireplknet.py', torch.float64)
    inputs = torch.randn(1, 3, 96, 128, dtype=torch.float64)
    # mmcv's NMS takes float32 only, so float64 stops at the FPN features the heads read.
    assert_folded_equal(model, lambda m: m.extract_feat(inputs), rel=1e-10)


def test_cascade_mask_rcnn_output_is_unchanged_by_folding():
    from mmdet.structures import DetDataSample
    model = build('tiny_cascade_unireplknet.py', torch.float32)
    inputs = torch.randn(1, 3, 96, 128)
    sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                         pad_shape=(96, 128), scale_factor=(1., 1.)))
    # Proposals from the folded RPN must be the same boxes, so compare the whole tensor output.
    assert_folded_equal(model, lambda m: m(inputs, [sample], mode='tensor'), rel=1e-4)


def test_deploy_config_loads_the_folded_segmentor():
    model = build('tiny_upernet_unireplknet.py', torch.float32)
    reparameterize(model)
    cfg = Config.fromfile(str(CONFIGS / 'tiny_upernet_unireplknet.py'))
    cfg.model.backbone.deploy = True
    target = MODELS.build(cfg.model).eval()
    target.load_state_dict(model.state_dict(), strict=True)
    inputs = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(inputs, mode='tensor'), model(inputs, mode='tensor'))

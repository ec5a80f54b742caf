"""UniRepLKNet's layer-wise learning-rate decay gives the authors' per-layer rates."""
import logging

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS
from torch import nn

from mmreplk.engine import (UniRepLKNetLearningRateDecayOptimizerConstructor, layer_decay,
                            unireplknet_layer_id)

LR, WD = 1e-4, 0.05


class _Block(nn.Module):
    """Parameter names, ranks and bias flags of the authors' block with a 3x3 kernel (sizes
    shrunk): GRN's gamma and beta are (1, 1, 1, C), the layer scale ``gamma`` is 1-D."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.se = nn.Module()
        self.se.down = nn.Conv2d(dim, dim // 2, 1)
        self.se.up = nn.Conv2d(dim // 2, dim, 1)
        self.pwconv1 = nn.Sequential(nn.Identity(), nn.Linear(dim, 2 * dim))
        grn = nn.Module()
        grn.gamma = nn.Parameter(torch.zeros(1, 1, 1, 2 * dim))
        grn.beta = nn.Parameter(torch.zeros(1, 1, 1, 2 * dim))
        self.act = nn.Sequential(nn.GELU(), grn)
        self.pwconv2 = nn.Sequential(nn.Linear(2 * dim, dim, bias=False), nn.Identity(),
                                     nn.BatchNorm2d(dim))
        self.gamma = nn.Parameter(torch.ones(dim))


class _Backbone(nn.Module):
    def __init__(self, depths, dim=4):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3), nn.LayerNorm(dim)) for _ in range(4))
        self.stages = nn.ModuleList(
            nn.Sequential(*[_Block(dim) for _ in range(depth)]) for depth in depths)
        for i in range(4):
            self.add_module(f'norm{i}', nn.LayerNorm(dim))


class _Segmentor(nn.Module):
    def __init__(self, depths):
        super().__init__()
        self.backbone = _Backbone(depths)
        self.decode_head = nn.Conv2d(4, 2, 1)


T_DEPTHS, S_DEPTHS = (3, 3, 18, 3), (3, 3, 27, 3)


def _expected_layer_ids(depths, num_layers):
    """The authors' table, written out per module: stem 0, stage 0 1, downsampling 1 and stage 1
    2, downsampling 2 3, stage 2 three blocks per id from 3, downsampling 3 and stage 3
    num_layers, the rest num_layers + 1."""
    ids = {'backbone.downsample_layers.0.': 0, 'backbone.downsample_layers.1.': 2,
           'backbone.downsample_layers.2.': 3, 'backbone.downsample_layers.3.': num_layers}
    ids.update({f'backbone.stages.0.{j}.': 1 for j in range(depths[0])})
    ids.update({f'backbone.stages.1.{j}.': 2 for j in range(depths[1])})
    ids.update({f'backbone.stages.2.{j}.': 3 + j // 3 for j in range(depths[2])})
    ids.update({f'backbone.stages.3.{j}.': num_layers for j in range(depths[3])})
    return ids


def _build(model, num_layers, decay_rate, **extra):
    cfg = dict(type='OptimWrapper',
               optimizer=dict(type='AdamW', lr=LR, betas=(0.9, 0.999), weight_decay=WD),
               constructor='UniRepLKNetLearningRateDecayOptimizerConstructor',
               paramwise_cfg=dict(num_layers=num_layers, decay_rate=decay_rate,
                                  decay_type='layer_wise', **extra))
    return build_optim_wrapper(model, cfg)


def _lr_and_wd_by_name(wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    found = {}
    for group in wrapper.optimizer.param_groups:
        assert [names[id(p)] for p in group['params']] == group['param_names']
        for param in group['params']:
            found[names[id(param)]] = (group['lr'], group['weight_decay'])
    return found


# (depths, num_layers, decay_rate): the authors' ADE20K T (no decay), ADE20K S and COCO S/B
# (decaying), COCO L/XL, and ADE20K S-22K, whose num_layers is short of the 27-block stage.
SETTINGS = [(T_DEPTHS, 9, 1.0), (S_DEPTHS, 12, 0.9), (S_DEPTHS, 12, 0.8), (S_DEPTHS, 12, 0.7),
            (S_DEPTHS, 9, 0.9)]


@pytest.mark.parametrize('depths,num_layers,decay_rate', SETTINGS)
def test_learning_rates_follow_the_authors_table(depths, num_layers, decay_rate):
    model = _Segmentor(depths)
    found = _lr_and_wd_by_name(_build(model, num_layers, decay_rate), model)
    assert set(found) == {n for n, _ in model.named_parameters()}
    table = _expected_layer_ids(depths, num_layers)
    for name, (lr, _) in found.items():
        prefixes = [p for p in table if name.startswith(p)]
        layer_id = table[prefixes[0]] if prefixes else num_layers + 1
        assert lr == pytest.approx(LR * decay_rate ** (num_layers + 1 - layer_id), rel=1e-12), name


def test_decaying_setting_values():
    """A few rates of the authors' COCO S recipe (0.8, 12 layers), as numbers."""
    model = _Segmentor(S_DEPTHS)
    found = _lr_and_wd_by_name(_build(model, 12, 0.8), model)
    expected = {
        'backbone.downsample_layers.0.0.weight': 1e-4 * 0.8 ** 13,   # 5.50e-6
        'backbone.stages.0.2.pwconv1.1.weight': 1e-4 * 0.8 ** 12,
        'backbone.downsample_layers.1.0.weight': 1e-4 * 0.8 ** 11,
        'backbone.stages.2.0.dwconv.weight': 1e-4 * 0.8 ** 10,
        'backbone.stages.2.26.dwconv.weight': 1e-4 * 0.8 ** 2,      # id 3 + 26 // 3 = 11
        'backbone.stages.3.0.dwconv.weight': 1e-4 * 0.8,
        'backbone.norm3.weight': 1e-4,
        'decode_head.weight': 1e-4,
    }
    for name, lr in expected.items():
        assert found[name][0] == pytest.approx(lr, rel=1e-12), name
    assert found['backbone.downsample_layers.0.0.weight'][0] == pytest.approx(5.49755813888e-06)


def test_short_num_layers_gives_rates_above_the_heads_and_warns(monkeypatch):
    # The authors' S-22K ADE20K recipe: blocks 24..26 of stage 2 get id 11 > num_layers + 1.
    # (MMLogger's handler keeps the stdout of the first test that logged, so the log is read
    # at its source.)
    logged = []
    monkeypatch.setattr(layer_decay, 'print_log',
                        lambda msg, logger=None, level=logging.INFO: logged.append((level, msg)))
    model = _Segmentor(S_DEPTHS)
    found = _lr_and_wd_by_name(_build(model, 9, 0.9), model)
    assert found['backbone.stages.2.24.dwconv.weight'][0] == pytest.approx(LR / 0.9)
    assert found['backbone.stages.2.23.dwconv.weight'][0] == pytest.approx(LR)
    warnings = [msg for level, msg in logged if level == logging.WARNING]
    assert len(warnings) == 1
    assert 'lr_scale > 1' in warnings[0] and 'backbone.stages.2.24.' in warnings[0]
    # The recipes whose num_layers covers the stage do not warn.
    logged.clear()
    _build(_Segmentor(S_DEPTHS), 12, 0.9)
    assert logged and not [msg for level, msg in logged if level == logging.WARNING]


def test_weight_decay_spares_one_dimensional_parameters_and_biases():
    model = _Segmentor(T_DEPTHS)
    found = _lr_and_wd_by_name(_build(model, 9, 1.0), model)
    block = 'backbone.stages.2.4.'
    for suffix, decays in [('dwconv.weight', True), ('norm.weight', False), ('norm.bias', False),
                           ('se.down.weight', True), ('se.down.bias', False),
                           ('pwconv1.1.weight', True), ('pwconv1.1.bias', False),
                           ('act.1.gamma', True), ('act.1.beta', True),  # (1, 1, 1, C): not 1-D
                           ('pwconv2.0.weight', True), ('pwconv2.2.weight', False),
                           ('gamma', False)]:
        assert found[block + suffix][1] == (WD if decays else 0.0), suffix
    assert found['decode_head.weight'][1] == WD and found['decode_head.bias'][1] == 0.0


def test_dw_scale_and_frozen_parameters():
    model = _Segmentor(T_DEPTHS)
    model.backbone.downsample_layers[0].requires_grad_(False)
    wrapper = _build(model, 9, 0.5, dw_scale=3.0)
    found = _lr_and_wd_by_name(wrapper, model)
    assert not any(name.startswith('backbone.downsample_layers.0.') for name in found)
    assert found['backbone.stages.1.0.dwconv.weight'][0] == pytest.approx(LR * 0.5 ** 8 * 3)
    assert found['backbone.stages.1.0.pwconv1.1.weight'][0] == pytest.approx(LR * 0.5 ** 8)
    names = {g['group_name'] for g in wrapper.optimizer.param_groups}
    assert 'layer_2_decay_dwconv' in names and 'layer_2_decay' in names


def test_stage_wise_ids():
    assert unireplknet_layer_id('backbone.downsample_layers.2.0.weight', 12, 'stage_wise') == 0
    assert unireplknet_layer_id('backbone.stages.2.20.dwconv.weight', 12, 'stage_wise') == 3
    assert unireplknet_layer_id('neck.lateral_convs.0.conv.weight', 12, 'stage_wise') == 13


@pytest.mark.filterwarnings('ignore:Detected call of')
def test_schedulers_keep_the_ratios():
    """Warm-up and poly decay scale each group from its own start, so ratios hold."""
    model = _Segmentor(T_DEPTHS)
    wrapper = _build(model, 9, 0.9)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
                                    end=5, optimizer=wrapper)),
        PARAM_SCHEDULERS.build(dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False,
                                    begin=5, end=20, optimizer=wrapper))]
    for _ in range(9):
        for scheduler in schedulers:
            scheduler.step()
    groups = wrapper.optimizer.param_groups
    head = next(g for g in groups if g['group_name'] == 'layer_10_decay')
    assert 0 < head['lr'] < LR
    for group in groups:
        assert group['lr'] / head['lr'] == pytest.approx(group['lr_scale'], rel=1e-9)


@pytest.mark.parametrize('paramwise_cfg,message', [
    (dict(decay_rate=0.9), "keys ['num_layers']"),
    (dict(num_layers=12, decay_rate=0.9, norm_decay_mult=0.0), "['norm_decay_mult']"),
    (dict(num_layers=12, decay_rate=0.9, decay_type='block_wise'), "'block_wise'"),
])
def test_bad_paramwise_cfg_is_refused_with_the_fix(paramwise_cfg, message):
    with pytest.raises(ValueError) as err:
        UniRepLKNetLearningRateDecayOptimizerConstructor(
            dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=LR, weight_decay=WD)),
            paramwise_cfg)
    assert message in str(err.value)


def test_names_outside_the_four_stages_are_refused():
    with pytest.raises(ValueError, match='UniRepLKNet parameter name'):
        unireplknet_layer_id('backbone.stages.4.0.dwconv.weight', 12)

"""Broken model configs fail when the Runner builds the model, with a message naming the field."""
import copy
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from mmreplk.apis import build_runner

REPO_ROOT = Path(__file__).resolve().parents[2]
SEG_DEMO = REPO_ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
DET_DEMO = REPO_ROOT / 'configs' / 'demo' / 'cascade_mask_rcnn_replknet_tiny_demo.py'
ARCH = dict(large_kernel_sizes=[31, 29, 27, 13], layers=[1, 1, 2, 1], channels=[16, 32, 64, 128],
            small_kernel=5, dw_ratio=1, ffn_ratio=2)

BAD_BACKBONES = {
    'unknown arch': (dict(arch='31X'), r"unknown RepLKNet arch '31X'"),
    'even large kernel': (dict(arch=dict(ARCH, large_kernel_sizes=[31, 28, 27, 13])),
                          r'large_kernel_sizes must be odd positive ints, got \[31, 28, 27, 13\]'),
    'even small kernel': (dict(arch=dict(ARCH, small_kernel=4)),
                          r'small_kernel must be an odd positive int or None, got 4'),
    'channel list one short': (dict(arch=dict(ARCH, channels=[16, 32, 64])),
                               r"one entry per stage.*'channels': 3"),
    'layers list one long': (dict(arch=dict(ARCH, layers=[1, 1, 2, 1, 1])),
                             r"one entry per stage.*'layers': 5"),
    'arch key missing': (dict(arch={k: v for k, v in ARCH.items() if k != 'dw_ratio'}),
                         r"missing \['dw_ratio'\]"),
    'arch key misspelt': (dict(arch=dict(ARCH, chanels=[1, 2, 3, 4])),
                          r"unknown keys \['chanels'\]"),
    'out_indices out of range': (dict(out_indices=(0, 4)), r'out_indices entry 4 is out of range'),
}


@pytest.fixture(scope='module')
def configs():
    return {path: Config.fromfile(path) for path in (SEG_DEMO, DET_DEMO)}


def _with_backbone(cfg: Config, override: dict) -> Config:
    cfg = copy.deepcopy(cfg)
    for key, value in override.items():
        cfg.model.backbone[key] = value  # replaces (merge_from_dict would merge into the arch)
    return cfg


@pytest.mark.parametrize('config', [SEG_DEMO, DET_DEMO], ids=['upernet', 'cascade'])
@pytest.mark.parametrize('case', sorted(BAD_BACKBONES))
def test_bad_backbone_fails_at_build_naming_the_field(configs, config, case):
    override, message = BAD_BACKBONES[case]
    cfg = _with_backbone(configs[config], override)
    # The whole segmentor/detector is built from the config, as the Runner does it.
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        with pytest.raises((KeyError, ValueError, IndexError), match=message):
            MODELS.build(cfg.model)


def test_runner_build_stops_on_a_bad_backbone(configs, tmp_path):
    override, message = BAD_BACKBONES['even large kernel']
    cfg = _with_backbone(configs[SEG_DEMO], override)
    cfg.work_dir = str(tmp_path)
    with pytest.raises(ValueError, match=message):
        build_runner(cfg)


@pytest.mark.parametrize('config', [SEG_DEMO, DET_DEMO], ids=['upernet', 'cascade'])
def test_demo_configs_themselves_build(configs, config):
    cfg = configs[config]
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'RepLKNet'

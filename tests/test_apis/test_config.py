import argparse

import pytest
from mmengine.config import Config
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from mmreplk.apis import ToolError, add_runner_args, load_config, merge_test_args, merge_train_args
from mmreplk.utils import ConfigError


def _cfg(scope='mmseg', **extra):
    cfg = Config(dict(
        default_scope=scope,
        model=dict(type='EncoderDecoder'),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-4)),
        test_dataloader=dict(dataset=dict(type='ADE20KDataset', pipeline=['single-scale'])),
        test_evaluator=dict(type='IoUMetric'),
        default_hooks=dict(visualization=dict(type='SegVisualizationHook')),
        visualizer=dict(type='SegLocalVisualizer'),
        tta_model=dict(type='SegTTAModel'),
        tta_pipeline=['multi-scale'],
        **extra), cfg_text='# in memory', filename='/somewhere/configs/my_config.py')
    return cfg


def _train_args(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('--resume', nargs='?', const='auto')
    parser.add_argument('--amp', action='store_true')
    return add_runner_args(parser).parse_args(list(argv))


def _test_args(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('checkpoint')
    parser.add_argument('--out')
    parser.add_argument('--show-dir')
    parser.add_argument('--tta', action='store_true')
    return add_runner_args(parser).parse_args(['ckpt.pth', *argv])


def test_work_dir_defaults_to_config_name_and_flag_wins():
    assert merge_train_args(_cfg(), _train_args()).work_dir == 'work_dirs/my_config'
    assert merge_train_args(_cfg(), _train_args('--work-dir', 'w')).work_dir == 'w'
    assert merge_train_args(_cfg(work_dir='from_cfg'), _train_args()).work_dir == 'from_cfg'


@pytest.mark.parametrize('argv,resume,load_from', [
    ((), False, None),
    (('--resume',), True, None),
    (('--resume', 'w/iter_8.pth'), True, 'w/iter_8.pth'),
])
def test_resume(argv, resume, load_from):
    cfg = merge_train_args(_cfg(resume=False, load_from=None), _train_args(*argv))
    assert cfg.resume is resume and cfg.load_from == load_from


def test_amp_and_launcher():
    cfg = merge_train_args(_cfg(), _train_args('--amp', '--launcher', 'pytorch'))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.launcher == 'pytorch'
    odd = _cfg()
    odd.optim_wrapper.type = 'CustomWrapper'
    with pytest.raises(ToolError, match='--amp needs optim_wrapper type OptimWrapper'):
        merge_train_args(odd, _train_args('--amp'))


def test_seg_test_options():
    cfg = merge_test_args(_cfg(), _test_args('--out', 'preds', '--show-dir', 'vis', '--tta'))
    assert cfg.load_from == 'ckpt.pth'
    assert cfg.test_evaluator.output_dir == 'preds'
    assert cfg.default_hooks.visualization.draw is True and cfg.visualizer.save_dir == 'vis'
    assert cfg.default_hooks.visualization.interval == 1
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline == ['multi-scale']


def test_det_test_options():
    cfg = _cfg(scope='mmdet')
    cfg.test_evaluator = dict(type='CocoMetric')
    cfg = merge_test_args(cfg, _test_args('--out', 'r.pkl', '--show-dir', 'vis'))
    assert [e['type'] for e in cfg.test_evaluator] == ['CocoMetric', 'DumpDetResults']
    assert cfg.test_evaluator[1]['out_file_path'] == 'r.pkl'
    assert cfg.default_hooks.visualization.test_out_dir == 'vis'
    with pytest.raises(ToolError, match=r'pickle file \(\.pkl\)'):
        merge_test_args(_cfg(scope='mmdet'), _test_args('--out', 'r.json'))


@pytest.mark.parametrize('argv,edit,message', [
    (('--tta',), lambda c: c.pop('tta_pipeline'), '--tta needs tta_pipeline'),
    (('--show-dir', 'v'), lambda c: c.default_hooks.pop('visualization'), 'visualization hook'),
    (('--out', 'x'), lambda c: c.__setitem__('default_scope', 'mmpretrain'), 'mmseg or mmdet'),
])
def test_test_option_errors(argv, edit, message):
    cfg = _cfg()
    edit(cfg)
    with pytest.raises(ToolError, match=message):
        merge_test_args(cfg, _test_args(*argv))


def test_load_config_applies_overrides_and_reports_missing_file(tmp_path):
    path = tmp_path / 'c.py'
    path.write_text("model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=None)))\n")
    cfg = load_config(path, {'model.backbone.init_cfg.checkpoint': 'w.pth'})
    assert cfg.model.backbone.init_cfg.checkpoint == 'w.pth'
    with pytest.raises(ToolError, match='config file not found'):
        load_config(tmp_path / 'nope.py')


class _Toy(BaseModule):
    def __init__(self, width: int = 1, heads: list | None = None, norm_cfg: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg)


class _ToyHead(_Toy):
    def __init__(self, channels: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)


@pytest.fixture
def toy_models():
    names = [f'_OptionKeys{cls.__name__}' for cls in (_Toy, _ToyHead)]
    for name, cls in zip(names, (_Toy, _ToyHead)):
        MODELS.register_module(name=name, module=cls, force=True)
    yield names
    for name in names:
        MODELS.module_dict.pop(name)


@pytest.mark.parametrize('key, problem', [
    ('model.widht', "_Toy (reached by model) takes no argument 'widht'; did you mean `width`?"),
    ('model.heads.0.chanels', "_ToyHead (reached by model.heads.0) takes no argument 'chanels'; "
                              'did you mean `channels`?'),
    ('model.heads.0.width', None),  # an argument of the base, reached through **kwargs
    ('model.norm_cfg.requires_grad', None),  # *_cfg dicts are built by helpers that take more
    ('model.heads.0.zzz', "_ToyHead (reached by model.heads.0) takes no argument 'zzz'; it "
                          'takes channels, heads, init_cfg, norm_cfg, width'),
    ('train_cfg.anything', None),  # built by no registry this check knows
])
def test_option_keys_are_checked_against_the_class_they_reach(toy_models, key, problem):
    toy, head = toy_models
    cfg = Config(dict(model=dict(type=toy, heads=[dict(type=head)], norm_cfg=dict(type=toy)),
                      train_cfg=dict()))
    if problem is None:
        assert load_config(cfg, {key: 1}) is cfg
        return
    with pytest.raises(ConfigError) as error:
        load_config(cfg, {key: 1})
    assert str(error.value) == f'unknown config key {key}: {problem}'

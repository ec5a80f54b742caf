"""The run keeps impl='auto's choices: a table in the work dir, one INFO line, the same paths
after --resume."""
import itertools
import json
import logging
from types import SimpleNamespace

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmreplk.apis.runner import add_dwconv_choices_hook
from mmreplk.engine.dwconv_choices import CHOICES_FILE, DwconvChoicesHook
from mmreplk.ops import Bucket, DepthwiseConv2d, DepthwiseDispatcher, use_dispatcher

_RUNS = itertools.count()
_BACKENDS = ['nchw', 'channels_last', 'cpu']


class _ConvModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.conv = DepthwiseConv2d(4, 7)

    def forward(self, inputs, mode='tensor'):
        out = self.conv(torch.stack(inputs) if isinstance(inputs, list) else inputs)
        return dict(loss=out.square().mean()) if mode == 'loss' else out


def _runner(work_dir, max_iters, resume=False):
    cfg = add_dwconv_choices_hook(Config(dict(custom_hooks=[])))
    data = [dict(inputs=torch.randn(4, 8, 8)) for _ in range(4)]
    return Runner(model=_ConvModel(), work_dir=str(work_dir),
                  experiment_name=f'dwconv_choices_{next(_RUNS)}',
                  train_dataloader=dict(dataset=data, batch_size=2,
                                        sampler=dict(type='DefaultSampler', shuffle=False),
                                        collate_fn=dict(type='default_collate')),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2,
                                                     by_epoch=False), logger=None),
                  custom_hooks=cfg.custom_hooks, resume=resume, log_level='INFO')


class _Lines(logging.Handler):

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        if record.levelno == logging.INFO and 'depth-wise conv' in record.getMessage():
            self.lines.append(record.getMessage())


def _train(runner):
    lines = _Lines()
    runner.logger.addHandler(lines)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(lines)
    return lines.lines


def test_the_hook_is_added_once():
    cfg = add_dwconv_choices_hook(Config(dict(custom_hooks=[dict(type='EMAHook')])))
    assert [h['type'] for h in cfg.custom_hooks] == ['EMAHook', 'DwconvChoicesHook']
    assert add_dwconv_choices_hook(cfg).custom_hooks == cfg.custom_hooks


def test_a_resumed_run_takes_the_paths_its_work_dir_recorded(tmp_path):
    # The first run measures: channels_last wins every pass.
    seconds = {'nchw': 2.0, 'channels_last': 1.0, 'cpu': 3.0}
    first = DepthwiseDispatcher(_BACKENDS, measure=lambda bucket, candidates, device: {
        name: seconds[name] for name in candidates})
    with use_dispatcher(first):
        lines = _train(_runner(tmp_path, max_iters=2))
    (line, ) = lines
    # Forward and weight gradient (the input needs no gradient).
    assert "impl='auto': 2 buckets (measured: 2 in" in line and CHOICES_FILE in line
    assert line.split('); ')[1].startswith('forward: channels_last 1; weight_grad: channels_last 1')
    table = json.loads((tmp_path / CHOICES_FILE).read_text())
    assert [entry['impl'] for entry in table.values()] == ['channels_last'] * 2
    assert all(entry['seconds'] == seconds for entry in table.values())

    # The resumed run would measure nchw fastest; it must not measure at all.
    def measure(bucket, candidates, device):
        raise AssertionError('a resumed run takes the recorded paths')

    resumed = DepthwiseDispatcher(_BACKENDS, measure=measure)
    with use_dispatcher(resumed):
        lines = _train(_runner(tmp_path, max_iters=4, resume=True))
    assert {(c.impl, c.source) for c in resumed.choices.values()} == {
        ('channels_last', 'from the work dir')}
    assert len(resumed.choices) == 2 and "from the work dir: 2" in lines[0]


def test_a_run_that_does_not_resume_measures_again(tmp_path):
    (tmp_path / CHOICES_FILE).write_text(json.dumps({'anything': 'nchw'}))
    dispatcher = DepthwiseDispatcher(_BACKENDS, measure=lambda bucket, candidates, device: {
        name: 1.0 for name in candidates})
    with use_dispatcher(dispatcher):
        _train(_runner(tmp_path, max_iters=2))
    assert dispatcher.measurements == 2
    assert 'anything' not in json.loads((tmp_path / CHOICES_FILE).read_text())  # a new table


def test_a_test_run_keeps_the_trainings_entries(tmp_path):
    table = tmp_path / CHOICES_FILE
    bucket = str(Bucket.of('forward', torch.device('cpu'), torch.float32, 7, (2, 4, 8, 8)))
    earlier = {bucket: {'impl': 'cpu', 'seconds': {'cpu': 1.0}}, 'elsewhere': 'nchw'}
    table.write_text(json.dumps(earlier))
    hook = DwconvChoicesHook()
    runner = SimpleNamespace(work_dir=str(tmp_path), cfg=Config(),
                             logger=MMLogger.get_current_instance())
    dispatcher = DepthwiseDispatcher(_BACKENDS, measure=lambda bucket, candidates, device: {
        name: 1.0 for name in candidates})
    with use_dispatcher(dispatcher):
        hook.before_run(runner)
        _ConvModel().conv(torch.randn(2, 4, 8, 8))  # what a test run measures
        hook.after_test_epoch(runner)
    written = json.loads(table.read_text())
    assert written[bucket] == earlier[bucket] and written['elsewhere'] == 'nchw'
    assert len(written) == 2 and dispatcher.measurements == 1


def test_a_damaged_table_is_ignored_on_resume(tmp_path):
    dispatcher = DepthwiseDispatcher(_BACKENDS, measure=lambda bucket, candidates, device: {
        name: 1.0 for name in candidates})
    with use_dispatcher(dispatcher):
        _train(_runner(tmp_path, max_iters=2))
    (tmp_path / CHOICES_FILE).write_text('[1, 2]')
    again = DepthwiseDispatcher(_BACKENDS, measure=lambda bucket, candidates, device: {
        name: 1.0 for name in candidates})
    with use_dispatcher(again):
        _train(_runner(tmp_path, max_iters=4, resume=True))
    assert again.measurements == 2

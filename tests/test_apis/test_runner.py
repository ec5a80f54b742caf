import logging
import weakref

import pytest
import torch
import torch.distributed as dist
from helpers import free_port
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmreplk.apis import ToolError, check_amp, prepare_distributed, resolve_pretrained


def _cfg(init_cfg, launcher='none'):
    norm = dict(type='SyncBN', requires_grad=True)
    return Config(dict(launcher=launcher, model=dict(
        backbone=dict(type='RepLKNet', norm_cfg=norm, init_cfg=init_cfg),
        decode_head=dict(norm_cfg=dict(norm), loss=[dict(type='CE')]))))


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def warnings_logged():
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def test_unset_pretrained_warns_once_and_trains_from_scratch(warnings_logged):
    cfg = _cfg(dict(type='Pretrained', checkpoint=None))
    resolve_pretrained(cfg)
    resolve_pretrained(cfg)
    warnings = [r for r in warnings_logged if 'No pretrained backbone weights' in r.getMessage()]
    assert len(warnings) == 1
    assert 'model.backbone.init_cfg.checkpoint=PATH' in warnings[0].getMessage()
    assert cfg.model.backbone.init_cfg is None


def test_pretrained_path_is_checked(tmp_path):
    with pytest.raises(ToolError, match='pretrained backbone checkpoint not found'):
        resolve_pretrained(_cfg(dict(type='Pretrained', checkpoint=str(tmp_path / 'x.pth'))))
    (tmp_path / 'x.pth').write_bytes(b'')
    cfg = resolve_pretrained(_cfg(dict(type='Pretrained', checkpoint=str(tmp_path / 'x.pth'))))
    assert cfg.model.backbone.init_cfg.checkpoint == str(tmp_path / 'x.pth')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only refusal')
def test_amp_is_refused_without_cuda():
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper')))
    with pytest.raises(ToolError, match='needs a CUDA GPU'):
        check_amp(cfg)
    check_amp(Config(dict(optim_wrapper=dict(type='OptimWrapper'))))


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU set-up only applies without CUDA')
def test_cpu_distributed_needs_torchrun_environment(monkeypatch):
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    cfg = _cfg(None, launcher='none')
    assert prepare_distributed(cfg).get('model_wrapper_cfg') is None
    with pytest.raises(ToolError, match='started by torchrun'):
        prepare_distributed(_cfg(None, launcher='pytorch'))
    with pytest.raises(ToolError, match='--launcher slurm needs CUDA'):
        prepare_distributed(_cfg(None, launcher='slurm'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU set-up only applies without CUDA')
def test_cpu_distributed_single_process_group(monkeypatch):
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '29517')
    cfg = _cfg(None, launcher='pytorch')
    try:
        prepare_distributed(cfg)
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', device_ids=None)
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.decode_head.norm_cfg.type == 'BN'


class _DistributedRunner:
    """Stands in for mmengine's Runner: creates the process group unless one exists, wraps its
    model in DDP, and sits in a reference cycle (as the real one does through its hooks)."""

    def __init__(self, port, wrappers):
        from mmengine.model.wrappers import MMDistributedDataParallel
        if not dist.is_initialized():
            dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0,
                                    world_size=1)
        self.model = MMDistributedDataParallel(module=torch.nn.Linear(2, 2), device_ids=None)
        self.cycle = self
        wrappers.append(weakref.ref(self.model))

    def train(self):
        pass

    def test(self):
        return {'mIoU': 1.0}


@pytest.fixture
def distributed_runner(monkeypatch):
    """``mmreplk.apis.runner`` building stand-in runners, and weak references to their wrappers."""
    from mmreplk.apis import runner as runner_module
    wrappers = []
    monkeypatch.setattr(runner_module, 'check_dataset_layout', lambda cfg, splits: None)
    monkeypatch.setattr(runner_module, 'build_runner',
                        lambda cfg: _DistributedRunner(free_port(), wrappers))
    return runner_module, wrappers


@pytest.mark.parametrize('entry', ['train', 'test'])
def test_process_group_created_by_the_run_is_released(distributed_runner, tmp_path, entry):
    # A gloo group whose DDP wrapper is still alive at interpreter shutdown can abort the
    # process there (SIGABRT after a good run): the run destroys the group and frees the wrapper.
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    cfg = _cfg(dict(type='Pretrained', checkpoint=None))
    cfg.load_from = str(checkpoint)
    runner_module, wrappers = distributed_runner
    result = getattr(runner_module, entry)(cfg)
    assert not dist.is_initialized()
    assert len(wrappers) == 1 and wrappers[0]() is None, 'the DDP wrapper outlived the run'
    if entry == 'train':
        assert isinstance(result.model, torch.nn.Linear)


def test_process_group_of_the_caller_is_kept(distributed_runner):
    runner_module, wrappers = distributed_runner
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
                            world_size=1)
    try:
        runner = runner_module.train(_cfg(dict(type='Pretrained', checkpoint=None)))
        assert dist.is_initialized() and wrappers[0]() is runner.model
    finally:
        dist.destroy_process_group()

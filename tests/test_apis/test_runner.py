import logging

import pytest
import torch
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
    import torch.distributed as dist
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


class _GroupCreatingRunner:
    """Stands in for mmengine's Runner, which initialises the process group itself."""

    def __init__(self, port):
        self.port = port

    def _init_group(self):
        import torch.distributed as dist
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{self.port}', rank=0,
                                world_size=1)
        assert dist.is_initialized()

    def train(self):
        self._init_group()

    def test(self):
        self._init_group()
        return {'mIoU': 1.0}


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize('entry', ['train', 'test'])
def test_process_group_created_by_the_run_is_destroyed(monkeypatch, tmp_path, entry):
    # A gloo group left to interpreter shutdown aborts the process (SIGABRT) after a good run.
    import torch.distributed as dist

    from mmreplk.apis import runner as runner_module
    monkeypatch.setattr(runner_module, 'check_dataset_layout', lambda cfg, splits: None)
    monkeypatch.setattr(runner_module, 'build_runner',
                        lambda cfg: _GroupCreatingRunner(_free_port()))
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    cfg = _cfg(dict(type='Pretrained', checkpoint=None))
    cfg.load_from = str(checkpoint)
    getattr(runner_module, entry)(cfg)
    assert not dist.is_initialized()


def test_process_group_of_the_caller_is_kept(monkeypatch):
    import torch.distributed as dist

    from mmreplk.apis import runner as runner_module
    monkeypatch.setattr(runner_module, 'check_dataset_layout', lambda cfg, splits: None)
    trained = []
    monkeypatch.setattr(runner_module, 'build_runner',
                        lambda cfg: type('R', (), {'train': lambda self: trained.append(1)})())
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{_free_port()}', rank=0,
                            world_size=1)
    try:
        runner_module.train(_cfg(dict(type='Pretrained', checkpoint=None)))
        assert trained and dist.is_initialized()
    finally:
        dist.destroy_process_group()

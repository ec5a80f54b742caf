"""Checkpoint trust through the tools: a planted malicious checkpoint is refused (and runs
nothing) unless --trust-checkpoint is given; runner checkpoints load without it."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmreplk.utils import UntrustedCheckpointError, load_checkpoint_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'


class _CreatesFile:
    """Unpickling this calls ``open(path, 'w')``: stands for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), 'w')


@pytest.fixture
def planted(tmp_path):
    marker = tmp_path / 'pwned.txt'
    checkpoint = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=dict(payload=_CreatesFile(marker))), checkpoint)
    images = tmp_path / 'images'
    images.mkdir()
    return checkpoint, marker, images


def test_infer_refuses_untrusted_checkpoint_and_runs_nothing(planted, tmp_path):
    checkpoint, marker, images = planted
    proc = subprocess.run(
        [sys.executable, 'tools/infer.py', str(DEMO_CONFIG), str(checkpoint), str(images),
         '--out-dir', str(tmp_path / 'out')],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    log = proc.stdout + proc.stderr
    assert 'UntrustedCheckpointError' in log and str(checkpoint) in log
    assert '--trust-checkpoint' in log
    assert 'Traceback' not in log
    assert not marker.exists()


def _load_tool(name: str):
    path = REPO_ROOT / 'tools' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trust_checkpoint_flag_reaches_the_loader(planted, tmp_path):
    checkpoint, marker, images = planted
    infer = _load_tool('infer')
    infer.main([str(DEMO_CONFIG), str(checkpoint), str(images), '--out-dir',
                str(tmp_path / 'out'), '--trust-checkpoint'])
    # It was unpickled, running its code: the opt-in took effect, and only for that call.
    assert marker.exists()
    marker.unlink()
    with pytest.raises(SystemExit):
        infer.main([str(DEMO_CONFIG), str(checkpoint), str(images), '--out-dir',
                    str(tmp_path / 'out')])
    assert not marker.exists()


@pytest.mark.parametrize('tool,args', [
    ('train', ['cfg.py', '--resume']),
    ('test', ['cfg.py', 'model.pth']),
    ('infer', ['cfg.py', 'model.pth', 'images', '--out-dir', 'out']),
])
def test_tools_accept_the_trust_flag(tool, args, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_runner_args exports it
    module = _load_tool(tool)
    assert module.parse_args(args + ['--trust-checkpoint']).trust_checkpoint is True
    assert module.parse_args(args).trust_checkpoint is False


class _ReachesAttribute:
    """Pickles as ``getattr(owner, name)``, the way HistoryBuffer stores its statistics."""

    def __init__(self, owner: object, name: str) -> None:
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


@pytest.mark.parametrize('owner,name', [(HistoryBuffer, '__init__'), (HistoryBuffer, 'update'),
                                        (np.ndarray, 'tofile')])
def test_getattr_in_a_checkpoint_reaches_only_history_buffer_statistics(tmp_path, owner, name):
    torch.save(dict(meta=dict(x=_ReachesAttribute(owner, name))), tmp_path / 'evil.pth')
    with pytest.raises(UntrustedCheckpointError, match='evil.pth'):
        load_checkpoint_file(tmp_path / 'evil.pth')
    buffer = HistoryBuffer()
    buffer.update(3.0)
    torch.save(dict(message_hub=dict(log_scalars=dict(loss=buffer))), tmp_path / 'runner.pth')
    loaded = load_checkpoint_file(tmp_path / 'runner.pth')['message_hub']['log_scalars']['loss']
    assert loaded.mean() == 3.0

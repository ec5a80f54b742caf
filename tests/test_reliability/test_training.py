"""Training through the real tools: 2-process gloo DDP, and kill -9 then --resume.

Both use the demo segmentation config, shrunk to 64x64 images and a few iterations, in
deterministic mode with :class:`~mmreplk.engine.CrashSafeCheckpointHook`.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import free_port

from mmreplk.datasets.demo import generate_demo_dataset
from mmreplk.utils import load_checkpoint_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
MAX_ITERS = 8

# Saves every rank's weights when training ends (checkpoints only hold rank 0's).
RANK_DUMP_HOOK = '''
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankWeightsHook(Hook):
    priority = 'LOWEST'

    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(model.state_dict(), osp.join(runner.work_dir, f'rank{get_rank()}.pth'))
'''


def _leaf_config(folder: Path, data_root: Path, extra: str = '') -> Path:
    text = textwrap.dedent(f'''
        _base_ = [{str(DEMO_CONFIG)!r}]
        crop_size = (64, 64)
        model = dict(data_preprocessor=dict(size=crop_size))
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
            dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PhotoMetricDistortion'),
            dict(type='PackSegInputs'),
        ]
        train_dataloader = dict(batch_size=2, num_workers=1,
                                dataset=dict(data_root={str(data_root)!r},
                                             pipeline=train_pipeline))
        val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                              dataset=dict(data_root={str(data_root)!r}))
        test_dataloader = val_dataloader
        train_cfg = dict(max_iters={MAX_ITERS}, val_interval=4)
        default_hooks = dict(
            logger=dict(interval=1),
            checkpoint=dict(type='CrashSafeCheckpointHook', interval=2, max_keep_ckpts=1))
        randomness = dict(seed=0, deterministic=True)
    ''') + textwrap.dedent(extra)
    path = folder / 'tiny_demo.py'
    path.write_text(text)
    return path


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp('data') / 'demo_ade', num_train=8,
                                 num_val=2, size=64)


def _env(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    env.update(extra)
    return env


def _train_cmd(config: Path, work_dir: Path, *args: str) -> list[str]:
    return [sys.executable, 'tools/train.py', str(config), '--work-dir', str(work_dir), *args]


def _run(cmd: list[str], env: dict | None = None, timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env or _env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f'stdout ends:\n{proc.stdout[-2500:]}\n'
                                  f'stderr ends:\n{proc.stderr[-2500:]}')
    return proc.stdout + proc.stderr


def _final_weights(work_dir: Path) -> dict:
    return load_checkpoint_file(work_dir / f'iter_{MAX_ITERS}.pth')['state_dict']


def test_two_process_gloo_training_keeps_ranks_identical(data_root, tmp_path):
    (tmp_path / 'rank_dump_hook.py').write_text(RANK_DUMP_HOOK)
    config = _leaf_config(tmp_path, data_root, extra='''
        custom_imports = dict(
            imports=['mmreplk', 'mmreplk.datasets.shapes_dataset', 'rank_dump_hook'],
            allow_failed_imports=False)
        # DDP keeps BN statistics per process (SyncBN has no CPU kernel): average them.
        custom_hooks = [dict(type='SyncBuffersHook'), dict(type='DumpRankWeightsHook')]
    ''')
    work_dir = tmp_path / 'work'
    # A rank that aborts prints where it was (mid-run or at interpreter shutdown).
    env = _env(PYTHON=sys.executable, MASTER_PORT=str(free_port()), PYTHONFAULTHANDLER='1',
               PYTHONPATH=f'{REPO_ROOT}{os.pathsep}{tmp_path}')
    log = _run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work_dir)],
               env=env)
    assert 'gloo' in log
    rank0 = torch.load(work_dir / 'rank0.pth', weights_only=True)
    rank1 = torch.load(work_dir / 'rank1.pth', weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank1[key], rank0[key], rtol=0, atol=0, msg=key)
    # The last checkpoint holds the same parameters (its BN statistics are rank 0's own: it is
    # written before SyncBuffersHook averages them at the end of training).
    final = load_checkpoint_file(work_dir / f'iter_{MAX_ITERS}.pth')
    assert final['meta']['iter'] == MAX_ITERS
    params = [key for key in rank0 if not key.rsplit('.', 1)[1].startswith(('running_', 'num_'))]
    assert any(key.endswith('large_kernel.lkb_origin.conv.weight') for key in params)
    for key in params:
        torch.testing.assert_close(final['state_dict'][key], rank0[key], rtol=0, atol=0, msg=key)


def test_sigkill_then_resume_matches_an_uninterrupted_run(data_root, tmp_path):
    config = _leaf_config(tmp_path, data_root)
    _run(_train_cmd(config, tmp_path / 'reference'))
    reference = _final_weights(tmp_path / 'reference')

    victim_dir = tmp_path / 'victim'
    victim = subprocess.Popen(_train_cmd(config, victim_dir), cwd=REPO_ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (victim_dir / 'last_checkpoint').exists():
            assert victim.poll() is None, 'training exited before its first checkpoint'
            assert time.monotonic() < deadline, 'no checkpoint within 240 s'
            time.sleep(0.02)
        time.sleep(0.2)  # into the next iteration (about 0.35 s each here)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    pointer = (victim_dir / 'last_checkpoint').read_text()
    assert not pointer.endswith(f'iter_{MAX_ITERS}.pth'), 'the run finished before the kill'
    assert Path(pointer).is_file()

    log = _run(_train_cmd(config, victim_dir, '--resume'))
    resumed_iter = int(log.split('resumed epoch: 0, iter: ')[1].split()[0])
    assert 0 < resumed_iter < MAX_ITERS
    resumed = _final_weights(victim_dir)
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=0, msg=key)
    assert sorted(p.name for p in victim_dir.glob('*.pth')) == [f'iter_{MAX_ITERS}.pth']

"""mmreplk.engine: atomic files, generator states, and exact resume with a toy mmengine Runner."""
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmreplk.engine import (ATOMIC_BACKEND, RNG_STATE_KEY, AtomicLocalBackend,
                            CheckpointSaveError, get_data_rng_state, get_model_rng_state,
                            set_data_rng_state, set_model_rng_state)
from mmreplk.utils import TMP_SUFFIX, atomic_write, load_checkpoint_file, remove_stale_tmp_files
from mmreplk.utils import fileio as utils_fileio
from .toy_runner import ToyModel, next_experiment_name, run_toy, toy_loader, weights

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- atomic files -------------------------------------------------------------------------------

def test_atomic_write_replaces_content_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / 'sub' / 'last_checkpoint'
    atomic_write('first', target)
    atomic_write(b'second', target)
    assert target.read_text() == 'second'
    assert sorted(p.name for p in target.parent.iterdir()) == ['last_checkpoint']


def test_atomic_write_honours_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(b'x', tmp_path / 'f.pth')
    finally:
        os.umask(old)
    assert (tmp_path / 'f.pth').stat().st_mode & 0o777 == 0o644


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'iter_3.pth'
    atomic_write(b'complete', target)

    def disk_full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(utils_fileio.os, 'fsync', disk_full)
    with pytest.raises(OSError, match='No space left'):
        atomic_write(b'half', target)
    assert target.read_bytes() == b'complete'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_3.pth']


def test_sigkill_during_atomic_write_never_exposes_a_partial_file(tmp_path):
    # The child dies by SIGKILL after the data is written to the temporary file, before the
    # rename: the final name must keep the old content, the temp file is cleaned up later.
    target = tmp_path / 'iter_6.pth'
    atomic_write(b'old checkpoint', target)
    # The child loads fileio.py alone (standard library only), which keeps it quick to start.
    child = textwrap.dedent(f"""
        import importlib.util, os, signal
        spec = importlib.util.spec_from_file_location('fileio', {utils_fileio.__file__!r})
        fileio = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fileio)
        fileio.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        fileio.atomic_write(b'new checkpoint' * 1000, {str(target)!r})
    """)
    proc = subprocess.run([sys.executable, '-c', child], capture_output=True, timeout=120,
                          cwd=REPO_ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert target.read_bytes() == b'old checkpoint'
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)]
    assert len(stale) == 1 and stale[0].stat().st_size == len(b'new checkpoint') * 1000
    (tmp_path / 'notes.tmp').write_text('not ours')
    assert remove_stale_tmp_files(tmp_path) == stale
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_6.pth', 'notes.tmp']


def test_atomic_backend_is_registered(tmp_path):
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend=ATOMIC_BACKEND))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'\x00\x01', tmp_path / 'a.pth')
    backend.put_text('iter_3.pth', tmp_path / 'last_checkpoint')
    assert (tmp_path / 'a.pth').read_bytes() == b'\x00\x01'
    assert backend.get_text(tmp_path / 'last_checkpoint') == 'iter_3.pth'


# --- generator states -------------------------------------------------------------------------

def _draw() -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(),
            np.random.normal(), random.gauss(0, 1))


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.normal()  # leaves a cached Gaussian in NumPy's state
    random.gauss(0, 1)  # and in Python's
    state = dict(model=get_model_rng_state(), data=get_data_rng_state())
    expected = _draw()
    torch.save({RNG_STATE_KEY: [state]}, tmp_path / 'rng.pth')
    _draw()
    loaded = load_checkpoint_file(tmp_path / 'rng.pth')[RNG_STATE_KEY][0]  # not trusted
    set_model_rng_state(loaded['model'])
    set_data_rng_state(loaded['data'])
    assert _draw() == expected


# --- the hook in a Runner ---------------------------------------------------------------------

@pytest.mark.parametrize('num_workers', [0, 1])
def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, num_workers):
    reference = weights(run_toy(tmp_path / 'full', num_workers=num_workers))
    run_toy(tmp_path / 'resumed', crash_at=5, num_workers=num_workers)
    assert (tmp_path / 'resumed' / 'last_checkpoint').read_text().endswith('iter_3.pth')
    resumed = run_toy(tmp_path / 'resumed', resume=True, num_workers=num_workers)
    assert resumed.iter == 9
    for key, value in reference.items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=0, atol=0, msg=key)


def test_epoch_based_run_resumed_from_an_epoch_checkpoint_is_exact(tmp_path):
    reference = weights(run_toy(tmp_path / 'full', by_epoch=True))
    run_toy(tmp_path / 'resumed', crash_at=6, by_epoch=True)  # in the middle of epoch 2
    assert (tmp_path / 'resumed' / 'last_checkpoint').read_text().endswith('epoch_1.pth')
    resumed = run_toy(tmp_path / 'resumed', resume=True, by_epoch=True)
    assert resumed.epoch == 3
    for key, value in reference.items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=0, atol=0, msg=key)


def test_without_rng_states_the_resume_is_not_exact(tmp_path):
    # Shows what the saved states buy: dropout masks after the resume differ otherwise.
    reference = weights(run_toy(tmp_path / 'full', save_rng_state=False))
    run_toy(tmp_path / 'resumed', crash_at=5, save_rng_state=False)
    resumed = weights(run_toy(tmp_path / 'resumed', resume=True, save_rng_state=False))
    assert any(not torch.equal(resumed[k], reference[k]) for k in reference)


def test_checkpoint_holds_per_rank_states_and_loads_without_trust(tmp_path):
    run_toy(tmp_path, max_iters=3)
    checkpoint = load_checkpoint_file(tmp_path / 'iter_3.pth')
    states = checkpoint[RNG_STATE_KEY]
    assert len(states) == 1 and set(states[0]) == {'model', 'data'}
    assert checkpoint['meta']['iter'] == 3


def test_fine_tuning_from_a_checkpoint_does_not_restore_its_rng_state(tmp_path):
    run_toy(tmp_path / 'a', max_iters=3)
    checkpoint = load_checkpoint_file(tmp_path / 'a' / 'iter_3.pth')
    expected_model_state = checkpoint[RNG_STATE_KEY][0]['model']['torch']
    runner = Runner(
        model=ToyModel(), work_dir=str(tmp_path / 'b'), experiment_name=next_experiment_name(),
        train_dataloader=toy_loader(0, shuffle=True), train_cfg=dict(by_epoch=False, max_iters=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        default_hooks=dict(checkpoint=dict(type='CrashSafeCheckpointHook', by_epoch=False,
                                           interval=1)),
        load_from=str(tmp_path / 'a' / 'iter_3.pth'), randomness=dict(seed=0),
        default_scope='mmengine')
    seen = []

    class Spy(Hook):
        priority = 'LOWEST'

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen.append(torch.get_rng_state())

    runner.register_hook(Spy())
    runner.train()
    assert not torch.equal(seen[0], expected_model_state)


def test_max_keep_ckpts_deletes_only_after_the_new_checkpoint_is_in_place(tmp_path, monkeypatch):
    run_toy(tmp_path, max_iters=3, max_keep_ckpts=1)
    real_fsync = utils_fileio.os.fsync
    writes = []

    def fail_on_checkpoint(fd):
        # The data of the next iter_6.pth is fully written; the disk then fails before rename.
        writes.append(fd)
        if len(writes) == 1:
            raise OSError(5, 'Input/output error')
        real_fsync(fd)

    monkeypatch.setattr(utils_fileio.os, 'fsync', fail_on_checkpoint)
    with pytest.raises(CheckpointSaveError, match='Input/output error'):
        run_toy(tmp_path, max_iters=6, max_keep_ckpts=1, resume=True)
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert 'iter_3.pth' in names and 'iter_6.pth' not in names
    assert not [n for n in names if n.endswith(TMP_SUFFIX)]
    assert (tmp_path / 'last_checkpoint').read_text().endswith('iter_3.pth')


def test_stale_temp_files_are_removed_when_training_starts(tmp_path):
    stale = tmp_path / f'.iter_3.pth.0badc0de{TMP_SUFFIX}'
    stale.write_bytes(b'half a checkpoint')
    run_toy(tmp_path, max_iters=3)
    assert not stale.exists()
    assert (tmp_path / 'iter_3.pth').is_file()

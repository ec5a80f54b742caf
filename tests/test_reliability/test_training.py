"""Training through the real tools: 2-process gloo DDP, kill -9 or SIGTERM then --resume,
damaged checkpoints and a full disk.

All use the demo segmentation config, shrunk to 64x64 images and a few iterations, in
deterministic mode with :class:`~mmreplk.engine.CrashSafeCheckpointHook`. A run to be signalled
is held at the start of a chosen iteration by ``PauseHook`` (tool_hooks.py) until the test has
sent the signal, so where the signal lands does not depend on timing.
"""
import os
import random
import re
import shutil
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
from mmreplk.engine import checkpoint_damage
from mmreplk.utils import TMP_SUFFIX, load_checkpoint_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
MAX_ITERS = 8

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
        custom_imports = dict(imports=['mmreplk', 'mmreplk.datasets.shapes_dataset',
                                       'tests.test_reliability.tool_hooks'],
                              allow_failed_imports=False)
        custom_hooks = [dict(type='PauseHook')]
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


def _run(cmd: list[str], env: dict | None = None, timeout: int = 300,
         returncode: int = 0) -> str:
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env or _env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == returncode, (f'stdout ends:\n{proc.stdout[-2500:]}\n'
                                           f'stderr ends:\n{proc.stderr[-2500:]}')
    return proc.stdout + proc.stderr


def _final_weights(work_dir: Path) -> dict:
    return load_checkpoint_file(work_dir / f'iter_{MAX_ITERS}.pth')['state_dict']


def _two_process_config(folder: Path, data_root: Path) -> Path:
    return _leaf_config(folder, data_root, extra='''
        # DDP keeps BN statistics per process (SyncBN has no CPU kernel): average them.
        custom_hooks = [dict(type='SyncBuffersHook'), dict(type='DumpRankWeightsHook'),
                        dict(type='PauseHook')]
    ''')


def _dist_train_cmd(config: Path, work_dir: Path, *args: str,
                    **env_extra: str) -> tuple[list[str], dict]:
    # A rank that aborts prints where it was (mid-run or at interpreter shutdown).
    env = _env(PYTHON=sys.executable, MASTER_PORT=str(free_port()), PYTHONFAULTHANDLER='1',
               **env_extra)
    return ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work_dir),
            *args], env


def _rank_weights(work_dir: Path) -> list[dict]:
    return [torch.load(work_dir / f'rank{rank}.pth', weights_only=True) for rank in (0, 1)]


@pytest.fixture(scope='module')
def two_process_run(data_root, tmp_path_factory):
    """An uninterrupted 2-process run: (config, work dir, log)."""
    folder = tmp_path_factory.mktemp('two_process')
    config = _two_process_config(folder, data_root)
    work_dir = folder / 'work'
    log = _run(*_dist_train_cmd(config, work_dir))
    return config, work_dir, log


def test_two_process_gloo_training_keeps_ranks_identical(two_process_run):
    _, work_dir, log = two_process_run
    assert 'gloo' in log
    rank0, rank1 = _rank_weights(work_dir)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank1[key], rank0[key], rtol=0, atol=0, msg=key)
    # The last checkpoint holds the same parameters and, averaged over the ranks before the
    # save, the same BN statistics.
    final = load_checkpoint_file(work_dir / f'iter_{MAX_ITERS}.pth')
    assert final['meta']['iter'] == MAX_ITERS
    assert any(key.endswith('large_kernel.lkb_origin.conv.weight') for key in rank0)
    assert any(key.endswith('running_mean') for key in rank0)
    for key in rank0:
        torch.testing.assert_close(final['state_dict'][key], rank0[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope='module')
def single_process_run(data_root, tmp_path_factory):
    """An uninterrupted one-process run: (config, its final weights)."""
    folder = tmp_path_factory.mktemp('single_process')
    config = _leaf_config(folder, data_root)
    _run(_train_cmd(config, folder / 'reference'))
    return config, _final_weights(folder / 'reference')


def _assert_same_weights(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=0, msg=key)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    """Waits for a file the run writes (an event, not a duration)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f'training exited before {path.name} appeared'
        assert time.monotonic() < deadline, f'no {path.name} within {timeout} s'
        time.sleep(0.02)


def _paused_run(cmd: list[str], env: dict, work_dir: Path, at: int, log: Path,
                ranks: int = 1) -> tuple[subprocess.Popen, list[int]]:
    """Starts a run held by PauseHook at the start of iteration ``at``: (process, rank pids)."""
    env = dict(env, PAUSE_AT=str(at))
    with open(log, 'w') as out:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    for rank in range(ranks):
        _wait_for(work_dir / f'paused{rank}', process)
    return process, [int((work_dir / f'paused{rank}').read_text()) for rank in range(ranks)]


def test_sigkill_then_resume_matches_an_uninterrupted_run(single_process_run, tmp_path):
    config, reference = single_process_run
    victim_dir = tmp_path / 'victim'
    # Held in iteration 3, after the checkpoint of iteration 2.
    victim, _ = _paused_run(_train_cmd(config, victim_dir), _env(), victim_dir, 3,
                            tmp_path / 'victim.log')
    try:
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    pointer = (victim_dir / 'last_checkpoint').read_text()
    assert pointer == str(victim_dir / 'iter_2.pth') and Path(pointer).is_file()

    log = _run(_train_cmd(config, victim_dir, '--resume'))
    assert 'resumed epoch: 0, iter: 2' in log
    _assert_same_weights(_final_weights(victim_dir), reference)
    assert sorted(p.name for p in victim_dir.glob('*.pth')) == [f'iter_{MAX_ITERS}.pth']


def test_sigterm_saves_its_iteration_exits_143_and_resume_matches(single_process_run,
                                                                  tmp_path):
    config, reference = single_process_run
    at = random.Random().randint(1, MAX_ITERS - 1)
    work_dir = tmp_path / 'work'
    run, _ = _paused_run(_train_cmd(config, work_dir), _env(), work_dir, at,
                         tmp_path / 'run.log')
    try:
        run.send_signal(signal.SIGTERM)
        (work_dir / 'go').touch()
        run.wait(timeout=120)
    finally:
        run.kill()
        run.wait()
    output = (tmp_path / 'run.log').read_text()
    assert run.returncode == 128 + signal.SIGTERM, f'stopped at {at}:\n{output[-3000:]}'
    saved = work_dir / f'iter_{at}.pth'
    [line] = [line for line in output.splitlines() if 'interrupted by SIGTERM' in line]
    assert f'interrupted by SIGTERM after iteration {at}: saved {saved}; resume with: ' in line
    assert load_checkpoint_file(saved)['meta']['iter'] == at
    assert 'Traceback' not in output

    command = line.split('; resume with: ')[1].strip()
    (work_dir / 'go').unlink()
    log = _run(['bash', '-c', command])
    assert f'resumed epoch: 0, iter: {at}' in log
    _assert_same_weights(_final_weights(work_dir), reference)


@pytest.mark.slow
def test_a_killed_rank_takes_the_job_down_and_resume_matches_both_ranks(two_process_run,
                                                                        tmp_path):
    config, reference_dir, _ = two_process_run
    work_dir = tmp_path / 'work'
    cmd, env = _dist_train_cmd(config, work_dir)
    # Held in iteration 3, after the checkpoint of iteration 2.
    job, pids = _paused_run(cmd, env, work_dir, 3, tmp_path / 'killed_job.log', ranks=2)
    try:
        os.kill(pids[1], signal.SIGKILL)
        # torchrun stops the other rank and fails the job (no restarts by default).
        job.wait(timeout=120)
    finally:
        job.kill()
        job.wait()
    output = (tmp_path / 'killed_job.log').read_text()
    assert job.returncode != 0, output[-3000:]
    assert re.search(rf'exitcode\s*:\s*-9 \(pid: {pids[1]}\)', output), output[-3000:]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_2.pth')

    log = _run(*_dist_train_cmd(config, work_dir, '--resume'))
    assert 'resumed epoch: 0, iter: 2' in log
    for resumed, reference in zip(_rank_weights(work_dir), _rank_weights(reference_dir)):
        _assert_same_weights(resumed, reference)
    assert not list(work_dir.glob(f'.*{TMP_SUFFIX}'))


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_both_ranks_at_one_iteration_and_resume_matches(
        two_process_run, tmp_path):
    config, reference_dir, _ = two_process_run
    at = random.Random().randint(1, MAX_ITERS - 1)
    work_dir = tmp_path / 'work'
    cmd, env = _dist_train_cmd(config, work_dir)
    # What Slurm, docker stop and Kubernetes do: SIGTERM to the launcher, which passes it on.
    job, pids = _paused_run(cmd, env, work_dir, at, tmp_path / 'job.log', ranks=2)
    try:
        job.send_signal(signal.SIGTERM)
        # The ranks go on once torchrun has passed the signal on to both (it says so).
        deadline = time.monotonic() + 60
        while (tmp_path / 'job.log').read_text().count('closing signal SIGTERM') < 2:
            assert time.monotonic() < deadline, (tmp_path / 'job.log').read_text()[-3000:]
            time.sleep(0.02)
        (work_dir / 'go').touch()
        job.wait(timeout=120)
    finally:
        job.kill()
        job.wait()
    output = (tmp_path / 'job.log').read_text()
    assert job.returncode != 0, output[-3000:]
    saved = work_dir / f'iter_{at}.pth'
    assert f'interrupted by SIGTERM after iteration {at}: saved {saved}' in output, \
        f'stopped at {at}:\n{output[-3000:]}'
    assert load_checkpoint_file(saved)['meta']['iter'] == at
    assert checkpoint_damage(saved) is None

    (work_dir / 'go').unlink()
    log = _run(*_dist_train_cmd(config, work_dir, '--resume'))
    assert f'resumed epoch: 0, iter: {at}' in log
    for resumed, reference in zip(_rank_weights(work_dir), _rank_weights(reference_dir)):
        _assert_same_weights(resumed, reference)


def test_resume_path_naming_a_damaged_file_stops_with_one_message(data_root, tmp_path):
    config = _leaf_config(tmp_path, data_root)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    torch.save(dict(meta=dict(iter=2)), work_dir / 'iter_2.pth')
    damaged = work_dir / 'iter_4.pth'
    damaged.write_bytes((work_dir / 'iter_2.pth').read_bytes()[:100])

    output = _run(_train_cmd(config, work_dir, '--resume', str(damaged)), returncode=1)

    assert f'CheckpointResumeError: cannot resume from {damaged}: truncated' in output
    assert f'--resume {work_dir / "iter_2.pth"}' in output
    assert 'Traceback' not in output


@pytest.mark.slow
def test_resume_through_the_tool_skips_a_truncated_newest_checkpoint(data_root, tmp_path):
    config = _leaf_config(tmp_path, data_root)
    keep_two = ('--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=2')
    _run(_train_cmd(config, tmp_path, *keep_two))
    reference = _final_weights(tmp_path)
    newest = tmp_path / f'iter_{MAX_ITERS}.pth'
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 3])

    log = _run(_train_cmd(config, tmp_path, '--resume', *keep_two))

    intact = tmp_path / f'iter_{MAX_ITERS - 2}.pth'
    assert log.count(f'cannot resume from {newest}') == 1
    assert 'truncated' in log and f'Resuming from {intact}, the newest intact checkpoint' in log
    assert f'resumed epoch: 0, iter: {MAX_ITERS - 2}' in log and 'Traceback' not in log
    resumed = _final_weights(tmp_path)
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=0, msg=key)


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh tmpfs (64 MB) to fill up; the test is skipped where mounting one is not allowed."""
    mount_point = tmp_path / 'tmpfs'
    mount_point.mkdir()
    if shutil.which('mount') is None:
        pytest.skip('no mount command')
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {proc.stderr.strip()}')
    yield mount_point
    subprocess.run(['umount', str(mount_point)], check=True)


@pytest.mark.slow
def test_a_full_disk_ends_the_tool_with_one_message_and_its_command_resumes(data_root, tmpfs):
    # As a user meets it: two checkpoints fit on the file system, a third does not.
    config = _leaf_config(tmpfs, data_root)
    work_dir = tmpfs / 'work'
    options = ('--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=2')
    _run(_train_cmd(config, work_dir, *options, 'train_cfg.max_iters=4'))
    checkpoint_size = (work_dir / 'iter_4.pth').stat().st_size
    ballast = tmpfs / 'ballast'
    # Written out: a sparse file would take no space.
    ballast.write_bytes(bytes(shutil.disk_usage(tmpfs).free - checkpoint_size // 2))

    output = _run(_train_cmd(config, work_dir, '--resume', *options), returncode=1)

    assert 'Traceback' not in output
    expected = (rf'CheckpointSaveError: could not save checkpoint {re.escape(str(work_dir))}'
                r'/iter_6\.pth: \[Errno 28\] No space left on device '
                r'\(it needs ([0-9.]+) ([kM])B, ([0-9.]+) ([kM])B free in ')
    match = re.search(expected, output)
    assert match, output[-3000:]
    needed, free = (float(value) * (1024 if unit == 'M' else 1)
                    for value, unit in (match.group(1, 2), match.group(3, 4)))
    assert free < needed and abs(needed * 1024 - checkpoint_size) < 0.05 * checkpoint_size
    assert f'the newest intact checkpoint is {work_dir / "iter_4.pth"}' in output
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth', 'iter_4.pth']
    assert all(checkpoint_damage(p) is None for p in work_dir.glob('*.pth'))
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_4.pth')
    assert not list(work_dir.glob(f'.*{TMP_SUFFIX}'))

    command = output.split('then resume from it with:\n')[1].splitlines()[0].strip()
    ballast.unlink()
    resumed = _run(['bash', '-c', command])
    assert 'resumed epoch: 0, iter: 4' in resumed
    assert (work_dir / f'iter_{MAX_ITERS}.pth').is_file()


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_message_and_keeps_finite_checkpoints(data_root,
                                                                            tmp_path):
    config = _leaf_config(tmp_path, data_root)
    work_dir = tmp_path / 'work'
    output = _run(_train_cmd(config, work_dir, '--cfg-options', 'optim_wrapper.optimizer.lr=1e8',
                             'default_hooks.checkpoint.max_keep_ckpts=2',
                             'default_hooks.checkpoint.interval=1', 'train_cfg.max_iters=20'),
                  returncode=1)
    # The loss turns NaN, or first the weights after a step (with a still finite loss).
    match = re.search(r'TrainingDiverged: training diverged at iteration (\d+): (\S+ = (nan|inf)'
                      r'|the weights after this step are not finite)', output)
    assert match, output[-3000:]
    iteration = int(match.group(1))
    assert 'Traceback' not in output and 'lower the learning rate (now ' in output
    kept = sorted(work_dir.glob('iter_*.pth'))
    assert kept, 'the run diverged before its first checkpoint'
    assert all(int(path.stem.split('_')[1]) < iteration for path in kept)
    for path in kept:
        state = load_checkpoint_file(path)['state_dict']
        assert all(torch.isfinite(value).all() for value in state.values()), path
    newest = max(kept, key=lambda path: int(path.stem.split('_')[1]))
    assert f'The newest finite checkpoint is {newest}: fix the cause, then resume from it ' \
           f'with:\n    ' in output


@pytest.mark.slow
def test_a_corrupt_training_image_is_skipped_with_one_warning(data_root, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(data_root, data)
    bad = data / 'images' / 'training' / 'demo_00003.jpg'
    bad.write_bytes(os.urandom(bad.stat().st_size))
    config = _leaf_config(tmp_path, data)
    # 1 bad file in 8 is a share of 12.5 %: allowed here, as 1 in 240 is by default.
    output = _run(_train_cmd(config, tmp_path / 'work', '--cfg-options',
                             'max_bad_sample_fraction=0.2'))
    warnings = [line for line in output.splitlines() if 'skipped a sample that cannot be read'
                in line]
    assert len(warnings) == 1 and str(bad) in warnings[0], output[-3000:]
    assert (tmp_path / 'work' / f'iter_{MAX_ITERS}.pth').is_file()

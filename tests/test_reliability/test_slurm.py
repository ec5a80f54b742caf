"""tools/slurm_train.sh with stand-ins for srun and scontrol: the signal it asks Slurm for, and
the requeue of an interrupted job."""
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _fake_slurm(folder: Path, srun_status: int) -> dict:
    """srun and scontrol that record their arguments; srun ends with ``srun_status``."""
    bin_dir = folder / 'bin'
    bin_dir.mkdir()
    for name, status in (('srun', srun_status), ('scontrol', 0)):
        script = bin_dir / name
        script.write_text(f'#!/usr/bin/env bash\necho "$*" >> {folder / name}.args\n'
                          f'exit {status}\n')
        script.chmod(0o755)
    return dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')


def _slurm_train(env: dict, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', 'tools/slurm_train.sh', 'gpu', 'job', 'cfg.py', '--amp'],
                          cwd=REPO_ROOT, env=dict(env, **extra), capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize('status', [138, 143])
def test_an_interrupted_job_is_requeued_and_resumes(tmp_path, status):
    env = _fake_slurm(tmp_path, status)
    proc = _slurm_train(env, REQUEUE='1', SLURM_JOB_ID='42', SIGNAL_AHEAD='300')
    assert proc.returncode == status
    srun_args = (tmp_path / 'srun.args').read_text()
    assert '--signal=USR1@300' in srun_args
    assert srun_args.rstrip().endswith('tools/train.py cfg.py --launcher slurm --resume --amp')
    assert (tmp_path / 'scontrol.args').read_text().split() == ['requeue', '42']
    assert 'requeueing job 42' in proc.stderr


@pytest.mark.parametrize('status, extra', [
    (0, dict(REQUEUE='1', SLURM_JOB_ID='42')),  # finished
    (1, dict(REQUEUE='1', SLURM_JOB_ID='42')),  # failed: a requeue would fail again
    (138, dict(SLURM_JOB_ID='42')),  # not asked for
])
def test_other_ends_are_not_requeued(tmp_path, status, extra):
    env = _fake_slurm(tmp_path, status)
    proc = _slurm_train(env, **extra)
    assert proc.returncode == status
    assert '--signal=USR1@180' in (tmp_path / 'srun.args').read_text()
    assert not (tmp_path / 'scontrol.args').exists()
    if 'REQUEUE' not in extra:
        assert '--resume' not in (tmp_path / 'srun.args').read_text()

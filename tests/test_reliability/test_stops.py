"""How a toy run stops: on a signal (with a checkpoint of that iteration and an exact resume),
on divergence (without a checkpoint of non-finite weights), and when a resume cannot continue."""
import errno
import functools
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmreplk.apis.resume_hint import resume_hints
from mmreplk.engine import (CheckpointResumeError, TrainingDiverged, TrainingInterrupted,
                            checkpoint_damage)
from mmreplk.engine.interrupt import StopSignals, ignore_stop_signals_in_worker
from mmreplk.utils import load_checkpoint_file
from .test_resume import _Records
from .toy_runner import PoisonAt, SignalAt, run_toy, weights


@pytest.fixture(scope='module')
def reference_weights(tmp_path_factory):
    return weights(run_toy(tmp_path_factory.mktemp('reference')))


def _assert_same(runner, reference: dict) -> None:
    for key, value in reference.items():
        torch.testing.assert_close(weights(runner)[key], value, rtol=0, atol=0, msg=key)


# --- signals -------------------------------------------------------------------------------------

@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_signal_saves_its_iteration_and_the_resume_is_exact(tmp_path, reference_weights,
                                                              signum):
    before = signal.getsignal(signum)
    stopped = run_toy(tmp_path, hooks=[SignalAt(5, signum)], raises=TrainingInterrupted)

    stop = stopped.raised
    assert (stop.signum, stop.iteration, stop.saved) == (signum, 5, True)
    assert stop.resume_from == str(tmp_path / 'iter_5.pth')
    assert stop.exit_status == 128 + signum
    assert load_checkpoint_file(tmp_path / 'iter_5.pth')['meta']['iter'] == 5
    assert (tmp_path / 'last_checkpoint').read_text() == stop.resume_from
    assert signal.getsignal(signum) == before  # the handler is gone with the run

    resumed = run_toy(tmp_path, resume=True, load_from=stop.resume_from)
    assert resumed.iter == 9
    _assert_same(resumed, reference_weights)


def test_a_signal_at_a_checkpoint_iteration_saves_it_once(tmp_path):
    stopped = run_toy(tmp_path, hooks=[SignalAt(6, signal.SIGTERM)], raises=TrainingInterrupted)
    assert stopped.raised.resume_from == str(tmp_path / 'iter_6.pth')
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_3.pth', 'iter_6.pth']


class _SignalDuringSave(SignalAt):
    """Sends a second SIGTERM while the checkpoint of the stop is being written."""

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        if runner.iter + 1 == self.at:
            signal.raise_signal(signal.SIGTERM)


def test_a_second_signal_during_the_save_changes_nothing(tmp_path, reference_weights):
    stopped = run_toy(tmp_path, hooks=[_SignalDuringSave(5, signal.SIGTERM)],
                      raises=TrainingInterrupted)
    assert stopped.raised.iteration == 5
    assert all(checkpoint_damage(path) is None for path in tmp_path.glob('*.pth'))
    resumed = run_toy(tmp_path, resume=True, load_from=stopped.raised.resume_from)
    _assert_same(resumed, reference_weights)


def test_the_tool_layer_logs_one_line_with_the_command_and_exits_128_plus_signum(tmp_path):
    stop = TrainingInterrupted(signal.SIGTERM, 30, str(tmp_path / 'iter_30.pth'), saved=True)
    argv = ['tools/train.py', 'cfg.py', '--work-dir', str(tmp_path), '--resume']
    with _Records() as records, pytest.raises(SystemExit) as exit_info, \
            resume_hints(argv=argv, environ={}):
        raise stop
    assert exit_info.value.code == 143
    [(level, line)] = records.messages
    assert level == logging.WARNING and '\n' not in line
    assert line.startswith(f'interrupted by SIGTERM after iteration 30: saved {tmp_path}/iter_30')
    assert line.endswith(f'; resume with: {shlex.quote(sys.executable)} tools/train.py cfg.py '
                         f'--work-dir {tmp_path} --resume {tmp_path}/iter_30.pth')


def test_the_tool_layer_adds_the_command_to_a_divergence(tmp_path):
    error = TrainingDiverged('training diverged at iteration 8: loss = nan. ... The newest finite '
                             'checkpoint is w/iter_6.pth: fix the cause, then resume from it',
                             resume_from='w/iter_6.pth')
    with pytest.raises(TrainingDiverged), resume_hints(argv=['tools/train.py', 'c.py'],
                                                       environ={}):
        raise error
    assert str(error).endswith(f'resume from it with:\n    {shlex.quote(sys.executable)} '
                               f'tools/train.py c.py --resume w/iter_6.pth')


def test_an_epoch_based_run_stops_on_a_signal_with_its_last_epoch_checkpoint(tmp_path):
    stopped = run_toy(tmp_path, by_epoch=True, hooks=[SignalAt(6, signal.SIGTERM)],
                      raises=TrainingInterrupted)
    stop = stopped.raised
    assert not stop.saved and stop.resume_from == str(tmp_path / 'epoch_1.pth')
    assert 'no checkpoint was written' in stop.describe()


# --- divergence ----------------------------------------------------------------------------------

def test_a_nan_loss_stops_at_that_iteration_and_keeps_the_finite_checkpoints(tmp_path):
    stopped = run_toy(tmp_path, max_iters=12, max_keep_ckpts=2,
                      hooks=[PoisonAt(8, 'loss')], raises=TrainingDiverged)
    assert stopped.iter == 7  # iteration 8 did not count
    message = str(stopped.raised)
    assert message.startswith('training diverged at iteration 8: loss_poison = nan. ')
    assert 'lower the learning rate (now 0.05' in message
    assert f'The newest finite checkpoint is {tmp_path / "iter_6.pth"}' in message
    assert stopped.raised.resume_from == str(tmp_path / 'iter_6.pth')
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_3.pth', 'iter_6.pth']
    for path in tmp_path.glob('*.pth'):
        state = load_checkpoint_file(path)['state_dict']
        assert all(torch.isfinite(value).all() for value in state.values())


def test_non_finite_weights_are_never_saved(tmp_path):
    # The loss of iteration 6 is finite, the weights after its step are not: the save refuses.
    stopped = run_toy(tmp_path, max_keep_ckpts=1, hooks=[PoisonAt(6, 'weights')],
                      raises=TrainingDiverged)
    assert ('training diverged at iteration 6: the weights after this step are not finite (the '
            'losses were)') in str(stopped.raised)
    assert [p.name for p in tmp_path.glob('*.pth')] == ['iter_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')


def test_the_skip_policy_lets_n_non_finite_steps_pass_then_stops(tmp_path):
    finished = run_toy(tmp_path / 'two', max_nonfinite_steps=2, hooks=[PoisonAt(4, count=2)])
    assert finished.iter == 9
    stopped = run_toy(tmp_path / 'three', max_nonfinite_steps=2, hooks=[PoisonAt(4, count=3)],
                      raises=TrainingDiverged)
    assert 'training diverged at iteration 6' in str(stopped.raised)
    assert '(already 2 non-finite steps were skipped)' in str(stopped.raised)


def test_the_divergence_check_reads_the_values_already_on_the_host(tmp_path):
    # No tensor is read: the check sees the floats RuntimeInfoHook put in the message hub.
    runner = run_toy(tmp_path, max_iters=3)
    buffer = runner.message_hub.log_scalars['train/loss']
    assert isinstance(buffer.current(), float) and math.isfinite(buffer.current())


# --- resumes that cannot continue ----------------------------------------------------------------

def test_resuming_past_max_iters_stops_with_one_message(tmp_path):
    run_toy(tmp_path, max_iters=6)
    stopped = run_toy(tmp_path, max_iters=3, resume=True, raises=CheckpointResumeError)
    assert 'at iteration 6, and this run ends at max_iters=3' in str(stopped.raised)


def test_resuming_into_another_model_stops_with_one_message(tmp_path):
    run_toy(tmp_path, max_iters=3)
    stopped = run_toy(tmp_path, max_iters=6, resume=True, width=8,
                      raises=CheckpointResumeError)
    message = str(stopped.raised)
    assert 'trained with another model' in message
    assert 'net.0.weight: checkpoint (16, 4) vs model (8, 4)' in message


class _SelfSignallingDataset(torch.utils.data.Dataset):
    """Item 0 sends SIGINT and SIGUSR1 to the process that prepares it (a worker), as ``srun``
    or Ctrl-C signalling the whole process group would."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        if index == 0:
            for signum in (signal.SIGINT, signal.SIGUSR1):
                os.kill(os.getpid(), signum)
        return index


def test_data_loader_workers_ignore_sigint_and_sigusr1():
    init = functools.partial(ignore_stop_signals_in_worker, None)
    loader = torch.utils.data.DataLoader(_SelfSignallingDataset(), num_workers=1,
                                         worker_init_fn=init)
    assert [int(batch) for batch in loader] == [0, 1, 2, 3]


class _ChildDied(Exception):
    pass


def _raise_child_died(signum, frame):
    raise _ChildDied


@pytest.mark.parametrize('stopping', [False, True])
def test_a_child_death_is_forgiven_only_once_a_stop_signal_came(stopping):
    # What torch's data loader does on SIGCHLD: raise in the main process.
    before = signal.signal(signal.SIGCHLD, _raise_child_died)
    signals = StopSignals()
    try:
        signals.install()
        signals.forgive_worker_deaths()
        if stopping:
            signal.raise_signal(signal.SIGTERM)
        try:
            child = subprocess.Popen([sys.executable, '-c', 'pass'])
            for _ in range(500):  # the SIGCHLD handler runs in the main thread, between bytecodes
                if child.poll() is not None:
                    time.sleep(0.01)
                    break
                time.sleep(0.01)
        except _ChildDied:
            assert not stopping, 'the death of a child ended the stopping run'
        else:
            assert stopping, 'torch\'s SIGCHLD handler was not called'
    finally:
        signals.uninstall()
        signal.signal(signal.SIGCHLD, before)


def test_a_full_disk_outside_a_save_stops_with_what_to_do(tmp_path, monkeypatch):
    # As when --resume runs before space was freed: the Runner's config dump fails first.
    from mmengine.config import Config

    from mmreplk.apis import runner as runner_module
    from mmreplk.engine import CheckpointError
    run_toy(tmp_path, max_iters=3)
    dump = str(tmp_path / 'cfg.py')

    def build_runner(cfg):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dump)

    monkeypatch.setattr(runner_module, 'check_dataset_layout', lambda cfg, splits: None)
    monkeypatch.setattr(runner_module, 'build_runner', build_runner)
    with pytest.raises(CheckpointError) as error, \
            resume_hints(argv=['tools/train.py', 'c.py', '--resume'], environ={}):
        runner_module.train(Config(dict(work_dir=str(tmp_path), resume=True, model=dict())))
    message = str(error.value)
    assert message.startswith(f'could not write {dump}: [Errno 28] No space left on device (')
    assert (f'No checkpoint was damaged: free some space, then resume from the newest intact '
            f'checkpoint {tmp_path / "iter_3.pth"} with:\n    ') in message
    assert message.endswith(f'--resume {tmp_path / "iter_3.pth"}')

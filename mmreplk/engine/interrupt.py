"""Stopping a training run cleanly on SIGTERM, SIGINT or SIGUSR1, and agreeing on it across ranks.

Slurm (at the time limit or on preemption, some 30 s before SIGKILL), ``docker stop``,
Kubernetes and torchrun send SIGTERM; a terminal sends SIGINT; ``sbatch --signal`` is usually
given SIGUSR1. :class:`StopSignals` only *records* such a signal: the handler runs between two
Python bytecodes of the main thread, where nothing can be saved safely. The training loop asks at
each iteration boundary (:func:`agree_to_stop`), and every rank stops after the same iteration,
so that a checkpoint written there holds the state of all of them. A second signal while the
checkpoint is written is recorded the same way and changes nothing.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_world_size

from ..utils.errors import UserError

#: The signals that stop a run after its current iteration.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class TrainingInterrupted(UserError):
    """Training stopped on a signal after an iteration, with a checkpoint of it when possible.

    A user error whose exit status says "interrupted": the command-line layer
    (:func:`mmreplk.apis.resume_hint.resume_hints`) logs one line (the checkpoint and the command
    that resumes from it) and exits with :attr:`exit_status` instead of 1.

    Args:
        signum (int): The signal.
        iteration (int): Iterations done when training stopped.
        resume_from (str, optional): The checkpoint holding them (or, where none could be written,
            the newest one); None when the run has none.
        saved (bool): Whether ``resume_from`` was written for this stop.
    """

    def __init__(self, signum: int, iteration: int, resume_from: str | None,
                 saved: bool) -> None:
        self.signum = signum
        self.iteration = iteration
        self.resume_from = resume_from
        self.saved = saved
        super().__init__(self.describe())

    @property
    def signal_name(self) -> str:
        """The signal's name, e.g. 'SIGTERM'."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """128 + the signal number: the shell's way of saying "ended by this signal" (143 for
        SIGTERM, 130 for SIGINT, 138 for SIGUSR1), which Slurm and torchrun report as a failure."""
        return 128 + self.signum

    def describe(self) -> str:
        """What happened, in one sentence without the resume command."""
        if self.saved:
            return (f'interrupted by {self.signal_name} after iteration {self.iteration}: '
                    f'saved {self.resume_from}')
        kept = (f'the newest checkpoint is {self.resume_from}' if self.resume_from else
                'this run has no checkpoint yet')
        return (f'interrupted by {self.signal_name} after iteration {self.iteration}; no '
                f'checkpoint was written for it (an epoch-based run saves at the end of an '
                f'epoch): {kept}')


def ignore_stop_signals_in_worker(worker_init_fn: Callable[[int], None] | None,
                                  worker_id: int) -> None:
    """A data-loader ``worker_init_fn``: the worker ignores SIGINT and SIGUSR1.

    ``srun`` and a terminal's Ctrl-C signal every process of the job or process group, the
    data-loader workers included; the main process owns the workers (it shuts them down when
    training stops, and they exit when it dies), so they ignore those two. SIGTERM keeps its
    meaning, since the interpreter's exit terminates live workers with it; a worker that dies of
    a SIGTERM sent to the whole group is forgiven by :class:`StopSignals` instead. Use it as
    ``functools.partial(ignore_stop_signals_in_worker, previous_init_fn)``.

    Args:
        worker_init_fn (Callable[[int], None], optional): The loader's own init function,
            called afterwards.
        worker_id (int): The worker's index.
    """
    for signum in (signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


class StopSignals:
    """Records the first of :data:`STOP_SIGNALS` while installed; the previous handlers return
    on :meth:`uninstall`.

    :meth:`forgive_worker_deaths` also takes SIGCHLD: torch's data loader answers a worker's
    death with an error raised in the main process wherever it is, and a SIGTERM sent to the
    whole process group (torchrun, ``srun``) kills the workers with the main process. Once a
    stop signal is recorded, a child's death is expected and the run goes on to its checkpoint;
    before, torch's handler reports it as usual.

    Only the main thread can install signal handlers: elsewhere :meth:`install` does nothing and
    the signals keep their previous meaning.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Callable | int | None] = {}

    @property
    def installed(self) -> bool:
        """Whether the handlers are in place (between :meth:`install` and :meth:`uninstall`)."""
        return bool(self._previous)

    def install(self) -> bool:
        """Starts recording. Returns whether the handlers were installed (main thread only)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return bool(self._previous)
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        return True

    def forgive_worker_deaths(self) -> None:
        """Wraps the SIGCHLD handler in place now (torch's, once a loader has started workers);
        call it after the loaders are built (``before_train``)."""
        if not self._previous or signal.SIGCHLD in self._previous:
            return
        self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._child_exited)

    def uninstall(self) -> None:
        """Puts the previous handlers back (idempotent)."""
        for signum, handler in reversed(self._previous.items()):
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _child_exited(self, signum: int, frame: object) -> None:
        if self.received is not None:
            return
        previous = self._previous.get(signal.SIGCHLD)
        if callable(previous):
            previous(signum, frame)

    def _record(self, signum: int, frame: object) -> None:
        # Only the first one counts; a second one (impatience, or torchrun passing on a signal
        # the rank already got) must not interrupt the save that the first one asked for.
        if self.received is None:
            self.received = signum


class StopVote:
    """Every rank's view of "stop now" combined at an iteration boundary.

    In a one-process run that is the local view, at no cost. With several processes it is one
    all-reduce (MAX) of two integers on the CPU, through a gloo group (the default group when
    its backend is gloo, else one created by :meth:`setup`): a few microseconds of host
    communication per iteration and no device synchronisation.
    """

    def __init__(self) -> None:
        self._group = None
        self._distributed = False

    def setup(self) -> None:
        """Creates the CPU group where needed. Collective: every rank calls it (before_train)."""
        self._distributed = get_world_size() > 1 and torch_dist.is_initialized()
        if self._distributed and torch_dist.get_backend() != 'gloo':
            self._group = torch_dist.new_group(backend='gloo')

    def agree(self, signum: int | None, diverged: bool) -> tuple[int | None, bool]:
        """Combines this rank's signal and divergence with every other rank's.

        Args:
            signum (int, optional): The stop signal this rank received, if any.
            diverged (bool): Whether this rank's losses stopped being finite.

        Returns:
            tuple[int | None, bool]: The signal to stop on (the highest number any rank got)
            and whether any rank diverged; the same on every rank.
        """
        if not self._distributed:
            return signum, diverged
        flags = torch.tensor([signum or 0, int(diverged)], dtype=torch.int64)
        torch_dist.all_reduce(flags, op=torch_dist.ReduceOp.MAX, group=self._group)
        agreed_signal, any_diverged = (int(value) for value in flags)
        return agreed_signal or None, bool(any_diverged)

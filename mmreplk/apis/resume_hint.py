"""The command that resumes a stopped ``tools/train.py`` run, and the exit a stop ends with.

The engine says *which* checkpoint a stopped run continues from (``resume_from`` of
:class:`~mmreplk.engine.resume.ResumableError` and
:class:`~mmreplk.engine.interrupt.TrainingInterrupted`); the shell command that does it is
composed here, in the command-line layer, from the process's own arguments.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import shlex
import sys
from collections.abc import Iterator, Sequence

from mmengine.logging import MMLogger

from mmreplk.engine.interrupt import TrainingInterrupted
from mmreplk.engine.resume import ResumableError

__all__ = ['resume_command', 'resume_hints']

# Flags of tools/train.py that the resume command replaces or that the launcher adds again, and
# how many values each takes ('?': an optional one).
_REPLACED_FLAGS: dict[str, int | str] = {'--resume': '?', '--launcher': 1, '--local-rank': 1,
                                         '--local_rank': 1}


def resume_command(checkpoint: str | None, argv: Sequence[str] | None = None,
                   environ: dict | None = None) -> str | None:
    """The command that repeats this ``tools/train.py`` run resuming from ``checkpoint``.

    The same interpreter, script and arguments, with ``--resume`` replaced. A run started by
    torchrun (``tools/dist_train.sh``) gets the ``dist_train.sh`` command with its number of
    processes per node.

    Args:
        checkpoint (str, optional): Checkpoint to resume from; None repeats the run as it was
            started, without ``--resume``.
        argv (Sequence[str], optional): The run's arguments. Defaults to ``sys.argv``.
        environ (dict, optional): Its environment. Defaults to ``os.environ``.

    Returns:
        str | None: A shell command, or None when the process is not ``tools/train.py``.
    """
    argv = list(sys.argv if argv is None else argv)
    environ = os.environ if environ is None else environ
    if not argv or osp.basename(argv[0]) != 'train.py':
        return None
    script, args = argv[0], _without_flags(argv[1:], _REPLACED_FLAGS)
    resume = ['--resume', checkpoint] if checkpoint else []
    if 'LOCAL_WORLD_SIZE' in environ and args:
        launcher = osp.join(osp.dirname(script), 'dist_train.sh')
        command = ['bash', launcher, args[0], environ['LOCAL_WORLD_SIZE'], *args[1:], *resume]
    else:
        command = [sys.executable, script, *args, *resume]
    return shlex.join(command)


def _without_flags(args: list[str], flags: dict[str, int | str]) -> list[str]:
    """``args`` without the given flags and their values (``'?'``: an optional value)."""
    kept, index = [], 0
    while index < len(args):
        name = args[index].split('=', 1)[0]
        if name not in flags:
            kept.append(args[index])
            index += 1
            continue
        index += 1
        if '=' in args[index - 1]:
            continue
        if flags[name] == '?':
            index += index < len(args) and not args[index].startswith('-')
        else:
            index += flags[name]
    return kept


@contextlib.contextmanager
def resume_hints(argv: Sequence[str] | None = None,
                 environ: dict | None = None) -> Iterator[None]:
    """Adds the resume command to the stops of a training run; exits on an interruption.

    A :class:`~mmreplk.engine.resume.ResumableError` (a failed save, a diverged run) gets its
    ``command`` and propagates (inside :func:`~mmreplk.apis.exit_on_user_error` it becomes its
    message and exit status 1). A :class:`~mmreplk.engine.interrupt.TrainingInterrupted` is
    logged as one line, with the command, and ends the process with its status (128 + signal).

    Args:
        argv (Sequence[str], optional): The run's arguments. Defaults to ``sys.argv``.
        environ (dict, optional): Its environment. Defaults to ``os.environ``.
    """
    try:
        yield
    except ResumableError as err:
        err.command = resume_command(err.resume_from, argv, environ)
        raise
    except TrainingInterrupted as stop:
        command = resume_command(stop.resume_from, argv, environ)
        verb = 'resume' if stop.resume_from else 'start again'
        how = f'; {verb} with: {command}' if command else ''
        MMLogger.get_current_instance().warning(f'{stop.describe()}{how}')
        raise SystemExit(stop.exit_status) from None

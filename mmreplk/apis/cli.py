"""The command-line layer every tool in ``tools/`` is built on.

A tool is ``parse_args()`` + ``main()``; ``main`` runs its library call inside
:func:`~mmreplk.apis.errors.exit_on_user_error` (a user error becomes one logged line and exit
status 1, like argparse's usage errors; anything else keeps its traceback) and
:func:`checkpoint_trust`, and returns 0. The flags tools share are declared here, once:

* :func:`add_config_args`: ``--cfg-options`` and, for tools that read checkpoints,
  ``--trust-checkpoint``;
* :func:`add_runner_args`: in addition ``--work-dir``, ``--launcher`` and the launchers'
  ``--local-rank``, for the tools built on mmengine's Runner.

Diagnostics go through mmengine's logger; what the user asked for (a table, a report of the
files written) is printed to stdout, so it can be piped.
"""
from __future__ import annotations

import argparse
import contextlib
import os

from mmengine.config import DictAction

from mmreplk.utils import trusted_checkpoints
from .errors import exit_on_user_error

__all__ = ['LAUNCHERS', 'add_config_args', 'add_runner_args', 'add_trust_arg', 'checkpoint_trust',
           'exit_on_user_error', 'parse_runner_args']

LAUNCHERS = ('none', 'pytorch', 'slurm')


def add_trust_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--trust-checkpoint``, the opt-in named by ``UntrustedCheckpointError``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.

    Returns:
        argparse.ArgumentParser: ``parser`` itself.
    """
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load checkpoints that need full unpickling; that runs any code '
                        'they contain, so only for files whose origin you trust')
    return parser


def add_config_args(parser: argparse.ArgumentParser,
                    checkpoint: bool = True) -> argparse.ArgumentParser:
    """Adds ``--cfg-options`` and, for tools that read checkpoints, ``--trust-checkpoint``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        checkpoint (bool): Whether the tool reads checkpoints. Defaults to True.

    Returns:
        argparse.ArgumentParser: ``parser`` itself.
    """
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.backbone.arch=31L '
                        'train_dataloader.batch_size=4 (lists: key="[a,b]", no spaces)')
    return add_trust_arg(parser) if checkpoint else parser


def add_runner_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the flags every runner-based tool shares: work dir, config overrides, launcher, trust.

    Args:
        parser (argparse.ArgumentParser): The tool's parser (with its positional arguments).

    Returns:
        argparse.ArgumentParser: ``parser`` itself.
    """
    parser.add_argument('--work-dir', help='folder for logs and checkpoints '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher for '
                        'multi-process runs (tools/dist_train.sh uses pytorch)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    return add_config_args(parser)


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: list[str] | None = None) -> argparse.Namespace:
    """Parses arguments and exports ``LOCAL_RANK`` for launchers that pass it as a flag.

    Args:
        parser (argparse.ArgumentParser): Parser built with :func:`add_runner_args`.
        argv (list[str], optional): Arguments; defaults to ``sys.argv[1:]``.

    Returns:
        argparse.Namespace: Parsed arguments.
    """
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def checkpoint_trust(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The context a tool loads checkpoints in: all trusted with ``--trust-checkpoint``.

    Args:
        args (argparse.Namespace): Parsed arguments (``trust_checkpoint`` may be absent, for
            tools that read no checkpoint).

    Returns:
        contextlib.AbstractContextManager: :func:`~mmreplk.utils.trusted_checkpoints` or a
        no-op context.
    """
    if getattr(args, 'trust_checkpoint', False):
        return trusted_checkpoints()
    return contextlib.nullcontext()

"""Argument and error handling shared by the deployment and analysis tools."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from mmengine.config import DictAction
from mmengine.logging import MMLogger

from mmreplk.apis import USER_ERRORS as RUNNER_USER_ERRORS
from mmreplk.apis import add_trust_arg

#: Errors that describe a problem the user can fix; tools log them and exit with status 1.
#: Beyond the runner tools' errors: checkpoints or arguments that do not fit a model
#: (ValueError, KeyError) and missing optional packages (ImportError).
USER_ERRORS = RUNNER_USER_ERRORS + (ValueError, KeyError, ImportError)


def add_config_args(parser: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """Adds ``--cfg-options`` and, for tools that read checkpoints, ``--trust-checkpoint``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        checkpoint (bool): Whether the tool reads checkpoints. Defaults to True.
    """
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.backbone.arch=31L')
    if checkpoint:
        add_trust_arg(parser)


def run_tool(work: Callable[[], int], name: str) -> int:
    """Runs a tool's body, turning user errors into a logged message and exit status 1.

    Args:
        work (Callable[[], int]): The body; returns the exit status.
        name (str): Tool name, for the logger.

    Returns:
        int: Exit status.
    """
    logger = (MMLogger.get_instance(name) if MMLogger.check_instance_created(name) else
              MMLogger.get_instance(name, logger_name='mmreplk'))
    try:
        return work()
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        logger.error(f'{name}: {message}')
        return 1

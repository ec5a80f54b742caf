"""How the tools turn an error the user can fix into one message line and an exit status."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from mmengine.logging import MMLogger
from mmengine.logging.logger import MMFormatter

from mmreplk.utils import UserError

#: Exceptions whose message alone tells the user what to do; no traceback is shown for them.
#: Every such class of the package derives from :class:`~mmreplk.utils.UserError`; anything
#: else (a bare ValueError, KeyError, FileNotFoundError) is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (UserError,)

# mmengine's formatter puts the code location (file, function, line) before every ERROR
# message. For a user error that location is always this module, and it pushes the message off
# the screen, so it is left out of the line this module logs.
_LOCATION = '%(pathname)s - %(funcName)s - %(lineno)d - '


@contextlib.contextmanager
def _without_location(logger: logging.Logger) -> Iterator[None]:
    formatters = [handler.formatter for handler in logger.handlers
                  if isinstance(handler.formatter, MMFormatter)]
    saved = [formatter.err_format for formatter in formatters]
    for formatter in formatters:
        formatter.err_format = formatter.err_format.replace(_LOCATION, '')
    try:
        yield
    finally:
        for formatter, err_format in zip(formatters, saved):
            formatter.err_format = err_format


def report_user_error(err: BaseException) -> None:
    """Logs ``err`` as one ERROR line, ``<class name>: <message>``, without the code location.

    Args:
        err (BaseException): The error.
    """
    logger = MMLogger.get_current_instance()
    with _without_location(logger):
        logger.error(f'{type(err).__name__}: {err}')


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Logs a :data:`USER_ERRORS` exception as one error line and exits with status 1.

    Other exceptions propagate with their traceback (they are bugs, not usage errors).
    """
    try:
        yield
    except USER_ERRORS as err:
        report_user_error(err)
        raise SystemExit(1) from None

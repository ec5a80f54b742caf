"""Errors the user can fix, and how the tools turn them into a message and an exit status."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mmengine.logging import MMLogger

from mmreplk.datasets.layout import DatasetLayoutError
from mmreplk.engine.resume import CheckpointError
from mmreplk.utils.checkpoint import UntrustedCheckpointError


class ToolError(RuntimeError):
    """A problem the user can fix (bad flag, missing file); tools print it and exit non-zero."""


#: Exceptions whose message alone tells the user what to do; no traceback is shown for them.
USER_ERRORS = (ToolError, DatasetLayoutError, UntrustedCheckpointError, FileNotFoundError,
               CheckpointError)


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Logs a :data:`USER_ERRORS` exception as one error message and exits with status 1.

    Other exceptions propagate with their traceback (they are bugs, not usage errors).
    """
    try:
        yield
    except USER_ERRORS as err:
        MMLogger.get_current_instance().error(f'{type(err).__name__}: {err}')
        raise SystemExit(1) from None

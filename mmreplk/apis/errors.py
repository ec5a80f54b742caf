"""Errors the user can fix, and how the tools turn them into a message and an exit status."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mmengine.logging import MMLogger

from mmreplk.datasets.layout import DatasetLayoutError
from mmreplk.engine.resume import CheckpointError
from mmreplk.tasks import ImageReadError
from mmreplk.utils import CheckpointMismatchError, ToolError, UntrustedCheckpointError

#: Exceptions whose message alone tells the user what to do; no traceback is shown for them.
#: Only our own classes (ToolError covers ConfigError and MissingDependencyError) and the
#: missing file a user named: a bare ValueError, KeyError or ImportError is a bug, and keeps its
#: traceback. Add a class here when its message names the problem and the fix.
USER_ERRORS: tuple[type[Exception], ...] = (
    ToolError,
    DatasetLayoutError,
    UntrustedCheckpointError,
    CheckpointMismatchError,
    ImageReadError,
    CheckpointError,
    FileNotFoundError,
)


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

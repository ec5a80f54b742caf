"""mmengine's local storage backend made crash-safe with :func:`mmreplk.utils.fileio.atomic_write`."""
from __future__ import annotations

from pathlib import Path

from mmengine.fileio import LocalBackend, register_backend

from ..utils.fileio import atomic_write

#: Name under which :class:`AtomicLocalBackend` is registered with ``mmengine.fileio``.
ATOMIC_BACKEND = 'mmreplk_atomic_local'


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local storage backend with crash-safe :meth:`put` and :meth:`put_text`.

    Select it with ``backend_args=dict(backend='mmreplk_atomic_local')`` wherever mmengine takes
    ``backend_args``; :class:`~mmreplk.engine.CrashSafeCheckpointHook` does so for local work dirs.
    """

    def put(self, obj: bytes, filepath: str | Path) -> None:
        """Writes bytes atomically (see :func:`atomic_write`).

        Args:
            obj (bytes): Data to be written.
            filepath (str | Path): Final path.
        """
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = 'utf-8') -> None:
        """Writes text atomically (see :func:`atomic_write`).

        Args:
            obj (str): Text to be written.
            filepath (str | Path): Final path.
            encoding (str): Text encoding. Defaults to 'utf-8'.
        """
        atomic_write(obj, filepath, encoding=encoding)

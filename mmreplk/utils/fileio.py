"""Crash-safe local file writes: a file is either complete under its final name or absent.

A process killed while writing (SIGKILL, OOM killer, node failure) must never leave a truncated
checkpoint behind its final name, where a later ``--resume`` would pick it up. Data is written to
a temporary file in the same folder, flushed to disk, and renamed over the target with
:func:`os.replace`, which POSIX guarantees to be atomic on one file system. Temporary files left
by a killed writer carry :data:`TMP_SUFFIX` and can be removed with :func:`remove_stale_tmp_files`.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import secrets
from pathlib import Path

#: Suffix of the temporary files written by :func:`atomic_write`.
TMP_SUFFIX = '.mmreplk-tmp'


class AtomicWriteError(OSError):
    """An :func:`atomic_write` that failed: the target is as it was, no temporary file remains.

    It carries the ``errno`` and ``strerror`` of the underlying error, the final path as
    ``filename``, and the number of bytes that were to be written as ``size``.
    """

    def __init__(self, err: OSError, path: str, size: int) -> None:
        super().__init__(err.errno, err.strerror or str(err), path)
        self.size = size


def _fsync_dir(folder: str) -> None:
    # The rename is only durable once the directory entry itself reaches the disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(data: bytes | str, path: str | os.PathLike, encoding: str = 'utf-8') -> None:
    """Writes ``data`` to ``path`` so that ``path`` never holds a partial file.

    The data goes to a temporary file next to ``path`` (same file system), is fsynced, and then
    replaces ``path`` in one rename. The parent folder is created if needed.

    Args:
        data (bytes | str): Content; text is encoded with ``encoding``.
        path (str | os.PathLike): Final file path.
        encoding (str): Encoding of text data. Defaults to 'utf-8'.

    Raises:
        AtomicWriteError: Writing failed (e.g. the disk is full); ``path`` is unchanged.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode(encoding)
    tmp_path = osp.join(folder, f'.{osp.basename(path)}.{secrets.token_hex(4)}{TMP_SUFFIX}')
    # Unlike tempfile.mkstemp (always 0600), this honours the umask, so checkpoints stay as
    # readable for a shared cluster group as a plain open() would make them.
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        if isinstance(err, OSError):
            raise AtomicWriteError(err, path, len(data)) from err
        raise
    _fsync_dir(folder)


def remove_stale_tmp_files(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files that writers killed inside :func:`atomic_write` left behind.

    Only call it when no other process writes into ``folder``.

    Args:
        folder (str | os.PathLike): Folder to clean (not recursive). A missing folder is fine.

    Returns:
        list[Path]: The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(f'.*{TMP_SUFFIX}') if p.is_file())
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale

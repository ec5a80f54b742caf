"""Choices of ``impl='auto'`` kept in JSON files: the opt-in cache shared by processes
(``MMREPLK_DWCONV_CACHE``) and the table a run leaves in its work dir (``dwconv_choices.json``).

Both files are a JSON object mapping a bucket (its ``str``) to the backend chosen there: a name
(the cache), or an object whose ``impl`` field holds it (the work dir's table, which also keeps
the measured times). Such a file is trusted with nothing. :func:`read_choices` opens only a
regular file (a FIFO would block the reader, ``/dev/zero`` would never end), reads at most
:data:`MAX_BYTES`, and refuses anything that is not such a mapping. :class:`ChoiceCache` turns
every read or write fault into one warning and a cache that steps aside (``auto`` measures
instead); it never replaces a file it could not read as a cache, and writes by reading what
other processes wrote, merging, and replacing the file atomically under a lock it waits for at
most :data:`LOCK_TIMEOUT_S`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator

from mmengine.logging import MMLogger

from mmreplk.utils.fileio import atomic_write
from mmreplk.utils.timing import now

#: Largest choice file read, in bytes (a full cache of :data:`MAX_ENTRIES` takes about half).
MAX_BYTES = 1 << 20

#: Entries a cache keeps; the oldest go first (a model at a few sizes needs a few hundred).
MAX_ENTRIES = 4096

#: Seconds a writer waits for another process's lock before it leaves its entries for later.
LOCK_TIMEOUT_S = 2.0


class NotAChoiceFile(ValueError):
    """A file at a choice file's path that is not one (and is therefore never replaced)."""


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, 'a folder'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISCHR, 'a device'),
             (stat.S_ISBLK, 'a device'), (stat.S_ISSOCK, 'a socket'))
    return next((name for test, name in kinds if test(mode)), 'not a regular file')


def read_choices(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> dict[str, str]:
    """The bucket -> backend mapping a choice file holds; empty where there is no file.

    Args:
        path (str | os.PathLike): The file.
        max_bytes (int): Larger files are refused unread. Defaults to :data:`MAX_BYTES`.

    Returns:
        dict[str, str]: Bucket -> backend name, in the file's order.

    Raises:
        NotAChoiceFile: Something else is at ``path`` (not a regular file, too large, not JSON,
            not a mapping of bucket -> backend name).
        OSError: The file cannot be read.
    """
    return {bucket: value['impl'] if isinstance(value, dict) else value
            for bucket, value in read_records(path, max_bytes).items()}


def read_records(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> dict[str, str | dict]:
    """The entries of a choice file as they are stored (a name, or an object with ``impl``),
    checked as :func:`read_choices` checks them."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(mode):
        raise NotAChoiceFile(f'{path} is {_file_kind(mode)}, not a regular file')
    # O_NONBLOCK: should a FIFO take the file's place after the stat, opening it cannot block.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, 'rb') as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise NotAChoiceFile(f'{path} is {_file_kind(mode)}, not a regular file')
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotAChoiceFile(f'{path} holds more than {max_bytes} bytes, more than a choice file')
    try:
        content = json.loads(data)
    except (ValueError, RecursionError) as error:  # deep nesting exhausts the parser's stack
        raise NotAChoiceFile(f'{path} is not JSON ({type(error).__name__}: {error})') from None
    if not isinstance(content, dict):
        raise NotAChoiceFile(f'{path} holds a JSON {type(content).__name__}, not an object of '
                             'bucket -> backend')
    for bucket, value in content.items():
        impl = value.get('impl') if isinstance(value, dict) else value
        if not isinstance(impl, str):
            raise NotAChoiceFile(f'{path} maps {bucket!r} to {value!r}, not to a backend name')
    return content


class ChoiceCache:
    """The disk cache of a dispatcher: choices read from a file shared with other processes, and
    added to it.

    Args:
        path (str | os.PathLike): The JSON file (created on the first write).
        max_entries (int): Entries kept. Defaults to :data:`MAX_ENTRIES`.
        lock_timeout (float): Seconds to wait for the lock. Defaults to :data:`LOCK_TIMEOUT_S`.
    """

    def __init__(self, path: str | os.PathLike, max_entries: int = MAX_ENTRIES,
                 lock_timeout: float = LOCK_TIMEOUT_S) -> None:
        self.path = os.fspath(path)
        self.max_entries = max_entries
        self.lock_timeout = lock_timeout
        #: Why the cache steps aside for the rest of the process, or None while it works.
        self.disabled: str | None = None
        self._choices: dict[str, str] | None = None
        self._unwritten: dict[str, str] = {}
        self._warned = False

    def _fault(self, what: str, error: BaseException, disable: bool = True) -> None:
        if disable:
            self.disabled = f'{what}: {error}'
            advice = ('it is not used for the rest of the run (choices are measured instead); '
                      'point MMREPLK_DWCONV_CACHE at a writable JSON file, or unset it')
        else:
            advice = 'the choices are written with the next one'
        message = f'depth-wise conv cache {self.path} {what}: {error}; {advice}.'
        logger = MMLogger.get_current_instance()
        if self._warned:
            logger.debug(message)
        else:
            self._warned = True
            logger.warning(message)

    def _read(self) -> dict[str, str]:
        try:
            return read_choices(self.path)
        except (OSError, ValueError) as error:
            self._fault('is ignored', error)
            return {}

    def get(self, bucket: str) -> str | None:
        """The backend cached for a bucket, or None (also when the file cannot be used)."""
        if self._choices is None:
            self._choices = self._read()
        return None if self.disabled else self._choices.get(bucket)

    def put(self, bucket: str, impl: str) -> None:
        """Adds a choice, merged with what other processes wrote since the file was read.

        Never raises: a fault is one warning, and a lock held too long by another process leaves
        the entry for the next write.

        Args:
            bucket (str): The bucket.
            impl (str): The backend chosen there.
        """
        if self.get(bucket) == impl or self.disabled:
            return
        self._choices[bucket] = impl
        self._unwritten[bucket] = impl
        try:
            with self._locked():
                merged = read_choices(self.path)
                for key, value in self._unwritten.items():
                    merged.pop(key, None)  # re-inserted last: the newest entries are kept
                    merged[key] = value
                merged = dict(list(merged.items())[-self.max_entries:])
                atomic_write(json.dumps(merged, indent=1), os.path.realpath(self.path))
        except TimeoutError as error:
            self._fault('is left for later', error, disable=False)
            return
        except NotAChoiceFile as error:
            self._fault('is not replaced', error)
            return
        except OSError as error:
            self._fault('cannot be written', error)
            return
        self._choices, self._unwritten = merged, {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Holds an exclusive lock on a side file (``PATH.lock``), never the cache itself, which
        is replaced under it. Raises TimeoutError after :attr:`lock_timeout` seconds."""
        lock_path = os.path.realpath(self.path) + '.lock'
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotAChoiceFile(f'its lock file {lock_path} is not a regular file')
            deadline = now() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if now() > deadline:
                        raise TimeoutError(f'another process held {lock_path} for more than '
                                           f'{self.lock_timeout} s') from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # closing releases the lock

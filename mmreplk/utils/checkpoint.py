"""The one place checkpoints are read from disk, with a deliberate trust policy.

torch >= 2.6 loads with ``weights_only=True`` by default, which mmengine 0.10.7 does not expect:
its runner checkpoints hold a pickled message hub (``HistoryBuffer`` objects, numpy arrays and
scalars). Falling back to full unpickling would let a downloaded file run code. Instead:

* every checkpoint is read with ``weights_only=True``, with exactly the types that runner
  checkpoints contain allow-listed (:data:`RUNNER_CHECKPOINT_GLOBALS`);
* a file that needs anything else is refused with :class:`UntrustedCheckpointError`, which names
  the file and the opt-in: ``trusted_checkpoints()`` in code, ``--trust-checkpoint`` in the tools;
* a zip archive with a compressed record is refused with :class:`CompressedCheckpointError`
  before anything is inflated, trusted or not: torch never compresses, and a deflated record of
  a few MB inflates to gigabytes inside ``torch.load`` (a zip bomb). Only the central directory
  is read for that (its size is bounded by the file's).

Importing :mod:`mmreplk` registers :func:`load_local_checkpoint` as mmengine's loader for local
paths, so runner resume, ``load_from``, ``tools/test.py`` and the inferencers all use this policy.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import zipfile
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .errors import MissingFileError, ToolError, UserError, import_optional

TRUST_HINT = ('If you trust this file, load it with --trust-checkpoint (tools) or inside '
              '`with mmreplk.utils.trusted_checkpoints():` (code); that runs any code it contains.')


def _numpy_globals() -> list:
    core = np._core if hasattr(np, '_core') else np.core  # numpy 2 renamed core -> _core
    found = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    found += [type(np.dtype(name)) for name in ('float16', 'float32', 'float64', 'int32', 'int64',
                                                  'uint8', 'bool')]
    return found


_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: object, name: str) -> object:
    """Stands in for ``getattr`` while unpickling: returns only HistoryBuffer's statistics.

    ``HistoryBuffer.__getstate__`` pickles its statistics methods as ``getattr(HistoryBuffer,
    'min')`` etc., so every runner checkpoint with a message hub calls ``builtins.getattr``.
    A general ``getattr`` would let a file reach arbitrary attributes; this one cannot.
    """
    if owner is not HistoryBuffer or name not in _HISTORY_BUFFER_STATISTICS:
        raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed')
    return getattr(owner, name)


#: Types (beyond tensors and containers) found in checkpoints written by mmengine's runner.
RUNNER_CHECKPOINT_GLOBALS = [HistoryBuffer, *_numpy_globals(),
                             (_history_buffer_statistic, 'builtins.getattr')]

_trust_all: contextvars.ContextVar[bool] = contextvars.ContextVar('mmreplk_trust_all', default=False)


class UntrustedCheckpointError(UserError, RuntimeError):
    """A checkpoint needs arbitrary unpickling, which is refused unless explicitly trusted."""


class CompressedCheckpointError(ToolError):
    """A checkpoint archive holds a compressed record, which torch never writes; refused unread."""


def compressed_record(records: Iterable[zipfile.ZipInfo]) -> str | None:
    """The name of the first compressed record of a zip archive's records, if any.

    Args:
        records (Iterable[zipfile.ZipInfo]): The archive's ``infolist()``.

    Returns:
        str | None: The record's name; None when every record is stored uncompressed.
    """
    return next((info.filename for info in records if info.compress_type != zipfile.ZIP_STORED),
                None)


def refuse_compressed(filename: str | os.PathLike) -> None:
    """Refuses a zip checkpoint with a compressed record, reading only its central directory.

    Files that are not zip archives (torch's legacy format, safetensors, damaged files) pass:
    their loader reports them.

    Args:
        filename (str | os.PathLike): The checkpoint file.

    Raises:
        CompressedCheckpointError: A record is compressed.
    """
    try:
        with zipfile.ZipFile(filename) as archive:
            name = compressed_record(archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    if name is not None:
        raise CompressedCheckpointError(
            f'refused to load checkpoint {os.fspath(filename)}: its record {name} is compressed, '
            f'which torch.save never does, and could inflate to any size in memory. Re-save it '
            f'from a trusted copy with torch.save.')


@contextlib.contextmanager
def trusted_checkpoints() -> Iterator[None]:
    """Within this context, checkpoints that need full unpickling are loaded.

    Only use it for files whose origin you trust: unpickling can run arbitrary code.
    """
    token = _trust_all.set(True)
    try:
        yield
    finally:
        _trust_all.reset(token)


def load_checkpoint_file(filename: str | os.PathLike,
                         map_location: str | torch.device | None = 'cpu',
                         trusted: bool = False) -> object:
    """Reads a checkpoint under the trust policy described in this module.

    Args:
        filename (str | os.PathLike): Path of the ``.pth`` file.
        map_location (str | torch.device, optional): Where to put tensors. Defaults to 'cpu'.
        trusted (bool): Allow full unpickling for this file. Defaults to False (or True inside
            :func:`trusted_checkpoints`).

    Returns:
        object: What was saved, usually a dict.

    Raises:
        MissingFileError: The file does not exist (a ``FileNotFoundError``).
        UntrustedCheckpointError: The file needs arbitrary unpickling and is not trusted.
        CompressedCheckpointError: The file holds a compressed record.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise MissingFileError('checkpoint file', filename)
    if filename.endswith('.safetensors'):
        return _load_safetensors(filename, map_location)
    refuse_compressed(filename)
    if trusted or _trust_all.get():
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(RUNNER_CHECKPOINT_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UntrustedCheckpointError(
            f'refused to load checkpoint {filename}: it needs unpickling beyond weights and the '
            f'types runner checkpoints contain ({reason}). {TRUST_HINT}') from None


def _load_safetensors(filename: str, map_location: str | torch.device | None) -> dict:
    """safetensors files hold only tensors, so they need no trust decision."""
    safetensors_torch = import_optional('safetensors.torch', f'reading {filename}',
                                        'pip install safetensors')
    device = map_location if isinstance(map_location, (str, torch.device)) else 'cpu'
    return safetensors_torch.load_file(filename, device=str(device))


def load_local_checkpoint(filename: str, map_location: str | torch.device | None = None) -> object:
    """mmengine ``CheckpointLoader`` scheme for local paths, under the trust policy."""
    return load_checkpoint_file(filename, map_location=map_location)


CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)

"""Which checkpoint ``--resume`` loads, and what a failed checkpoint save tells the user.

A checkpoint can be damaged after it was written completely: a copy between file systems that
stopped half-way, a sync still writing when its node died, a bad disk. mmengine's automatic
resume loads whatever ``last_checkpoint`` names and stops with torch's zip-reader error.
:func:`resolve_resume` instead checks the file first and, for an automatic resume, falls back to
the newest intact checkpoint of the work dir.

**How a checkpoint is checked** (:func:`checkpoint_damage`). ``torch.save`` writes an
uncompressed zip archive: a ``data.pkl`` record (the pickled structure, tens of kB) and one
record per tensor storage, each behind a 30-byte local header, then the central directory at the
end of the file. The check reads the central directory, then every record's local header, and
requires each record to lie wholly inside the file and to be stored uncompressed (torch never
compresses; a compressed record is how a small file inflates to gigabytes, so it is refused
before anything is inflated, see :func:`mmreplk.utils.checkpoint.compressed_record`). Then it
reads every record once, in 1 MiB pieces, and compares it with its CRC-32, ``data.pkl`` first.
``torch.load`` compares none of them, so without this pass a bit flipped inside a tensor would
be resumed from silently.

What it costs, measured on this project's shared 2-core machine (AMD EPYC, Dec 2026) with a
synthetic 1.07 GB checkpoint of 4,500 tensors (about the 31B UperNet with its AdamW state), the
file in the page cache: 1.5 s for the whole check, as long as the ``torch.load`` that follows
(1.55 s). With the cache dropped the pass reads the file from disk once, and the load then
finds it cached. A resume checks the newest file and, only if that is damaged, the next ones.
"""
from __future__ import annotations

import errno
import logging
import os
import os.path as osp
import re
import shutil
import struct
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

from mmengine.config import Config
from mmengine.dist import get_rank, is_distributed
from mmengine.logging import print_log

from mmreplk.utils import UserError
from mmreplk.utils.checkpoint import compressed_record

#: Name of the file in the work dir that names the newest checkpoint (written by mmengine).
POINTER_NAME = 'last_checkpoint'

# Checkpoint files written by CheckpointHook's default filename template.
_CHECKPOINT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')
# torch.save's legacy (pre-1.6, non-zip) format starts with a pickled magic number.
_LEGACY_MAGIC = b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19'
_ZIP_LOCAL_HEADER = struct.Struct('<4sHHHHHIIIHH')
_ZIP_LOCAL_SIGNATURE = b'PK\x03\x04'
# A path is a few hundred bytes; a larger pointer file is not one (and is not read whole).
_POINTER_MAX_BYTES = 4096
_CRC_CHUNK = 1 << 20


class CheckpointError(UserError, RuntimeError):
    """A checkpoint problem the user can act on; the message says what happened and what to do.

    The tools print it without a traceback (it is one of ``mmreplk.apis.USER_ERRORS``).
    """


class ResumableError(UserError):
    """Mixin of an error after which the run can go on from a checkpoint.

    The message ends with how to do so: :attr:`command`, which the command-line layer fills in
    (:func:`mmreplk.apis.resume_hint.resume_hints`), or else, given a checkpoint, the in-code
    form.

    Args:
        message (str): What happened and what to do, up to "resume from it".
        resume_from (str, optional): The checkpoint to resume from; None when the run has to
            start again.
    """

    def __init__(self, message: str, resume_from: str | None = None) -> None:
        super().__init__(message)
        self.resume_from = resume_from
        self.command: str | None = None

    def __str__(self) -> str:
        if self.command:
            return f'{super().__str__()} with:\n    {self.command}'
        if self.resume_from:
            return f'{super().__str__()} (in code: Runner(..., resume=True, load_from=PATH)).'
        return super().__str__()


class CheckpointResumeError(CheckpointError):
    """``--resume`` found no checkpoint it can load."""


class DiskFullError(ResumableError, CheckpointError):
    """The work dir's file system filled up (or its quota) outside a checkpoint save."""


class CheckpointSaveError(ResumableError, CheckpointError):
    """Saving a checkpoint failed (full disk, quota, I/O error); no partial file was left."""


def checkpoint_damage(path: str | os.PathLike) -> str | None:
    """Says why a local checkpoint file cannot be loaded, without loading it.

    See the module docstring for what is checked and what it costs. Folders (DeepSpeed
    checkpoints) and files in torch's legacy format are not checked.

    Args:
        path (str | os.PathLike): The checkpoint file.

    Returns:
        str | None: The damage, e.g. ``'truncated: ...'``, or None when the file looks intact.
    """
    path = os.fspath(path)
    if not osp.exists(path):
        return 'it does not exist'
    if osp.isdir(path):
        return None
    size = osp.getsize(path)
    if size == 0:
        return 'it is empty (0 bytes)'
    try:
        with open(path, 'rb') as f:
            head = f.read(len(_LEGACY_MAGIC))
            if head == _LEGACY_MAGIC:
                return None
            if not head.startswith(_ZIP_LOCAL_SIGNATURE):
                return (f'it is not a torch checkpoint: its {size} bytes start with neither a zip '
                        f'nor a pickle header')
            return _zip_damage(f, size)
    except OSError as err:
        return f'it cannot be read ({err.strerror or err})'


def _zip_damage(f: BinaryIO, size: int) -> str | None:
    """The damage of an open file that starts like a zip archive (see :func:`checkpoint_damage`)."""
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, ValueError, EOFError):
        return (f'truncated: {size} bytes with the start of a torch zip archive but without its '
                f'end (central directory)')
    with archive:
        records = archive.infolist()
        pickles = [info for info in records if info.filename.endswith('/data.pkl')]
        if not pickles:
            return 'it is a zip archive without data.pkl, not a torch checkpoint'
        for info in records:
            f.seek(info.header_offset)
            header = f.read(_ZIP_LOCAL_HEADER.size)
            if len(header) < _ZIP_LOCAL_HEADER.size:
                return f'truncated: record {info.filename} starts past the end of the file'
            signature, *_, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack(header)
            if signature != _ZIP_LOCAL_SIGNATURE:
                return f'damaged: the header of record {info.filename} is overwritten'
            data_start = info.header_offset + _ZIP_LOCAL_HEADER.size + name_length + extra_length
            if data_start + info.compress_size > size:
                return f'truncated: record {info.filename} runs past the end of the file'
        compressed = compressed_record(records)
        if compressed is not None:
            return (f'refused: record {compressed} is compressed, which torch never writes '
                    f'(it could inflate to any size)')
        # data.pkl first: its damage is the one torch.load itself would trip on.
        for info in sorted(records, key=lambda info: info is not pickles[0]):
            if not _crc_matches(archive, info):
                return f'damaged: record {info.filename} fails its CRC-32 check'
    return None


def _crc_matches(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Reads a stored record in pieces; zipfile compares the CRC-32 when the record ends."""
    # torch.serialization.set_crc32_options(False) writes CRC 0: nothing to compare then.
    if not info.CRC:
        return True
    try:
        with archive.open(info) as record:
            while record.read(_CRC_CHUNK):
                pass
    except (zipfile.BadZipFile, NotImplementedError, EOFError):
        return False
    return True


def _checkpoint_number(name: str) -> int | None:
    match = _CHECKPOINT_NAME.match(name)
    return int(match.group(1)) if match else None


def _checkpoints_in(folder: str) -> list[str]:
    """Checkpoint files of ``folder``, newest (highest iteration/epoch number) first."""
    if not osp.isdir(folder):
        return []
    numbered = [(number, name) for name in os.listdir(folder)
                if (number := _checkpoint_number(name)) is not None]
    return [osp.join(folder, name) for _, name in sorted(numbered, reverse=True)]


def _is_local(path: str) -> bool:
    return '://' not in path


@dataclass
class ResumeCandidates:
    """What :func:`find_resume_checkpoint` looked at in a work dir.

    Attributes:
        pointer (str | None): The checkpoint ``last_checkpoint`` names (a relative path
            resolved against the work dir); None without that file or when it holds no path.
        chosen (str | None): The checkpoint to resume from; None when none is usable.
        rejected (list[tuple[str, str]]): ``(path, damage)`` of each file tried and refused,
            in the order tried.
    """
    pointer: str | None
    chosen: str | None = None
    rejected: list[tuple[str, str]] = field(default_factory=list)


def find_resume_checkpoint(work_dir: str | os.PathLike) -> ResumeCandidates:
    """Finds the checkpoint an automatic resume should load.

    The checkpoint ``last_checkpoint`` names, if it is intact (remote paths are taken as they
    are); otherwise the intact checkpoint with the highest iteration or epoch number in its
    folder or in ``work_dir`` (``iter_N.pth``/``epoch_N.pth``; file times are not used, a copy
    changes them).

    Args:
        work_dir (str | os.PathLike): The run's work dir.

    Returns:
        ResumeCandidates: The choice and what was refused on the way.
    """
    work_dir = osp.abspath(work_dir)
    pointer_file = osp.join(work_dir, POINTER_NAME)
    pointer, pointer_damage = _read_pointer(pointer_file)
    if pointer is not None and _is_local(pointer):
        # A relative path names a file of the work dir, wherever the run is started from.
        pointer = osp.normpath(osp.join(work_dir, pointer))
    found = ResumeCandidates(pointer)
    if pointer_damage is not None:
        found.rejected.append((pointer_file, pointer_damage))
    candidates = []
    if pointer is not None:
        if not _is_local(pointer):
            found.chosen = pointer
            return found
        candidates.append(pointer)
    # The pointer's folder is the hook's out_dir, which may differ from the work dir.
    folders = {work_dir, *(osp.dirname(path) for path in candidates)}
    by_number = sorted({path for folder in folders for path in _checkpoints_in(folder)},
                       key=lambda path: (_checkpoint_number(osp.basename(path)), path),
                       reverse=True)
    candidates += [path for path in by_number if path not in candidates]
    for path in candidates:
        damage = checkpoint_damage(path)
        if damage is None:
            found.chosen = path
            break
        found.rejected.append((path, damage))
    return found


def _read_pointer(pointer_file: str) -> tuple[str | None, str | None]:
    """The path ``last_checkpoint`` holds, or why it holds none (read with a size cap)."""
    if not osp.isfile(pointer_file):
        return None, None
    with open(pointer_file, 'rb') as f:
        data = f.read(_POINTER_MAX_BYTES + 1)
    if len(data) > _POINTER_MAX_BYTES:
        return None, (f'it is over {_POINTER_MAX_BYTES} bytes, not the path of a checkpoint; '
                      f'ignored')
    try:
        return data.decode('utf-8').strip() or None, None
    except UnicodeDecodeError:
        return None, 'it is not text, not the path of a checkpoint; ignored'


def _describe(rejected: list[tuple[str, str]]) -> str:
    return '; '.join(f'{path}: {damage}' for path, damage in rejected)


def _warn_on_rank_zero(message: str) -> None:
    # Before the Runner exists the logger does not know the rank yet: ask the launcher's variable.
    rank = get_rank() if is_distributed() else int(os.environ.get('RANK', '0'))
    if rank == 0:
        print_log(message, logger='current', level=logging.WARNING)


def resolve_resume(cfg: Config) -> Config:
    """Checks the checkpoint a resumed run will load, and picks an intact one when it may.

    ``cfg.resume`` with ``cfg.load_from`` set (``--resume PATH``): the file must be intact,
    else :class:`CheckpointResumeError` names it, its damage and the intact checkpoints next to
    it. ``cfg.resume`` alone (``--resume``): ``cfg.load_from`` becomes the checkpoint
    :func:`find_resume_checkpoint` chooses, with one warning when that is not the one
    ``last_checkpoint`` names; with checkpoints in the work dir but none intact,
    :class:`CheckpointResumeError` lists what was tried. A work dir without checkpoints leaves
    the config as it is (training starts from the beginning, as with mmengine).

    Args:
        cfg (Config): Full config with ``work_dir`` (edited in place).

    Returns:
        Config: ``cfg``.

    Raises:
        CheckpointResumeError: No intact checkpoint to resume from, as described above.
    """
    if not cfg.get('resume'):
        return cfg
    load_from = cfg.get('load_from')
    if load_from:
        _check_requested(str(load_from))
        return cfg
    found = find_resume_checkpoint(cfg.work_dir)
    pointer_file = osp.join(osp.abspath(cfg.work_dir), POINTER_NAME)
    if found.chosen is None:
        if found.rejected:
            raise CheckpointResumeError(
                f'--resume found no intact checkpoint in {osp.abspath(cfg.work_dir)}. Tried '
                f'{_describe(found.rejected)}. Resume from a copy with --resume PATH, or train '
                f'from the beginning without --resume.')
        return cfg
    if found.rejected or found.pointer is None:
        named = (f'{pointer_file} is missing' if not osp.isfile(pointer_file) else
                 f'{pointer_file} names no checkpoint' if found.pointer is None else
                 f'cannot resume from {found.pointer} (named by {pointer_file}): '
                 f'{found.rejected[0][1]}')
        skipped = found.rejected[1:] if found.pointer is not None else found.rejected
        also = f' Also skipped {_describe(skipped)}.' if skipped else ''
        _warn_on_rank_zero(f'{named}. Resuming from {found.chosen}, the newest intact checkpoint.{also}')
    cfg.load_from = found.chosen
    return cfg


def _check_requested(path: str) -> None:
    if not _is_local(path):
        return
    damage = checkpoint_damage(path)
    if damage is None:
        return
    intact = next((other for other in _checkpoints_in(osp.dirname(osp.abspath(path)))
                   if other != osp.abspath(path) and checkpoint_damage(other) is None), None)
    hint = (f' The newest intact checkpoint beside it is {intact}: resume from it with '
            f'--resume {intact}, or with --resume alone to let the work dir\'s newest intact '
            f'checkpoint be found.' if intact else ' No intact checkpoint lies beside it.')
    raise CheckpointResumeError(f'cannot resume from {path}: {damage}.{hint}')


def _size_text(size: int) -> str:
    for unit, scale in (('GB', 2**30), ('MB', 2**20)):
        if size >= scale:
            return f'{size / scale:.1f} {unit}'
    return f'{size / 2**10:.1f} kB'


def save_failure(path: str, err: OSError, work_dir: str, size: int | None) -> CheckpointSaveError:
    """The :class:`CheckpointSaveError` of a failed save: what failed, the space, what to do.

    Args:
        path (str): The checkpoint that could not be saved.
        err (OSError): The error.
        work_dir (str): The run's work dir (where ``last_checkpoint`` lives).
        size (int, optional): Bytes the checkpoint needed, when known.

    Returns:
        CheckpointSaveError: The error, with the checkpoint to resume from.
    """
    folder = osp.dirname(osp.abspath(path)) if _is_local(path) else None
    space = ''
    if folder is not None and osp.isdir(folder):
        free = shutil.disk_usage(folder).free
        needed = f'it needs {_size_text(size)}' if size is not None else 'its size is unknown'
        space = f' ({needed}, {_size_text(free)} free in {folder})'
    code = f'[Errno {err.errno}] ' if err.errno in errno.errorcode else ''
    fix = ('free some space' if err.errno in (errno.ENOSPC, errno.EDQUOT) else
           'fix the cause')
    found = find_resume_checkpoint(work_dir)
    if found.chosen is None:
        state = (f'No partial file was left, and no checkpoint of this run is intact yet: '
                 f'{fix}, then start it again')
    else:
        named = f' ({POINTER_NAME} names it)' if found.chosen == found.pointer else ''
        state = (f'No partial file was left; the newest intact checkpoint is {found.chosen}'
                 f'{named}: {fix}, then resume from it')
    return CheckpointSaveError(
        f'could not save checkpoint {path}: {code}{err.strerror or err}{space}. {state}',
        resume_from=found.chosen)


def disk_full(err: OSError, work_dir: str) -> DiskFullError:
    """The :class:`DiskFullError` of a write that failed for space outside a checkpoint save.

    Args:
        err (OSError): The error (ENOSPC or EDQUOT).
        work_dir (str): The run's work dir.

    Returns:
        DiskFullError: The error, with the checkpoint to resume from.
    """
    folder = osp.abspath(work_dir)
    while not osp.isdir(folder) and osp.dirname(folder) != folder:
        folder = osp.dirname(folder)
    free = f' ({_size_text(shutil.disk_usage(folder).free)} free in {folder})'
    where = f' {err.filename}' if err.filename else ''
    found = find_resume_checkpoint(work_dir)
    state = (f'free some space, then resume from the newest intact checkpoint {found.chosen}'
             if found.chosen else 'free some space, then start the run again')
    return DiskFullError(f'could not write{where}: [Errno {err.errno}] {err.strerror or err}'
                         f'{free}. No checkpoint was damaged: {state}', resume_from=found.chosen)

"""Damaged checkpoints and failed saves: what --resume picks, and what a full disk tells the user.

The runs are the toy runs of :mod:`toy_runner` (checkpoints every 3 iterations, deterministic),
resumed through :func:`mmreplk.engine.resolve_resume`, the function ``tools/train.py`` calls.
"""
import errno
import logging
import os
import re
import shlex
import struct
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmreplk.apis import exit_on_user_error
from mmreplk.apis.resume_hint import resume_command
from mmreplk.engine import (CheckpointResumeError, CheckpointSaveError, checkpoint_damage,
                            find_resume_checkpoint, resolve_resume)
from mmreplk.utils import TMP_SUFFIX
from mmreplk.utils import fileio as utils_fileio
from .toy_runner import run_toy, weights


class _Records(logging.Handler):
    """Records what is logged to the current mmengine logger (the one the code under test uses)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))

    def __enter__(self) -> '_Records':
        self.logger = MMLogger.get_current_instance()
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)


def _resume_cfg(work_dir: Path, load_from: str | None = None) -> tuple[Config, list[str]]:
    """resolve_resume on a config of ``work_dir``, and the warnings it logged."""
    with _Records() as records:
        cfg = resolve_resume(Config(dict(work_dir=str(work_dir), resume=True,
                                         load_from=load_from)))
    return cfg, [message for level, message in records.messages if level == logging.WARNING]


def _small_checkpoint(path: Path, tensors: int = 3) -> Path:
    torch.save(dict(meta=dict(iter=1), state_dict={f'w{i}': torch.arange(1000.) * i
                                                     for i in range(tensors)}), path)
    return path


# --- checking a file without loading it ---------------------------------------------------------

def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _truncate_last_byte(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def _empty(path: Path) -> None:
    path.write_bytes(b'')


def _random_bytes(path: Path) -> None:
    # 'PK' or a pickle opcode at the start would be another case; this start is neither.
    path.write_bytes(b'\x00' + os.urandom(path.stat().st_size - 1))


def _overwrite_a_tensor_header(path: Path) -> None:
    offset = zipfile.ZipFile(path).getinfo('checkpoint/data/1').header_offset
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(bytes(64))


def _corrupt_the_pickle(path: Path) -> None:
    offset = zipfile.ZipFile(path).getinfo('checkpoint/data.pkl').header_offset
    with open(path, 'r+b') as f:
        f.seek(offset + 26)
        name_length, extra_length = struct.unpack('<HH', f.read(4))
        f.seek(offset + 30 + name_length + extra_length + 5)
        f.write(b'\xff\xfe')


def _largest_tensor_record(path: Path) -> zipfile.ZipInfo:
    records = [info for info in zipfile.ZipFile(path).infolist() if '/data/' in info.filename]
    return max(records, key=lambda info: info.file_size)


def _flip_bytes_inside_a_tensor(path: Path) -> None:
    """Bit rot: 8 bytes inside the largest tensor record, every header left intact."""
    info = _largest_tensor_record(path)
    with open(path, 'r+b') as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack('<HH', f.read(4))
        start = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
        f.seek(start)
        data = f.read(8)
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in data))


def _flip_the_byteorder_record(path: Path) -> None:
    info = zipfile.ZipFile(path).getinfo('checkpoint/byteorder')
    with open(path, 'r+b') as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack('<HH', f.read(4))
        f.seek(info.header_offset + 30 + name_length + extra_length)
        f.write(b'b')  # 'little' -> 'bittle'


@pytest.mark.parametrize('damage, expected', [
    (_truncate_half, 'truncated'),
    (_truncate_last_byte, 'truncated'),
    (_empty, 'empty (0 bytes)'),
    (_random_bytes, 'not a torch checkpoint'),
    (_overwrite_a_tensor_header, 'header of record checkpoint/data/1 is overwritten'),
    (_corrupt_the_pickle, 'data.pkl fails its CRC-32 check'),
    (_flip_the_byteorder_record, 'record checkpoint/byteorder fails its CRC-32 check'),
])
def test_checkpoint_damage_names_what_torch_load_would_trip_on(tmp_path, damage, expected):
    path = _small_checkpoint(tmp_path / 'checkpoint.pth')
    assert checkpoint_damage(path) is None
    damage(path)
    assert expected in checkpoint_damage(path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)


def test_checkpoint_damage_finds_bit_rot_that_torch_load_lets_through(tmp_path):
    path = _small_checkpoint(tmp_path / 'checkpoint.pth')
    _flip_bytes_inside_a_tensor(path)
    name = _largest_tensor_record(path).filename
    assert checkpoint_damage(path) == f'damaged: record {name} fails its CRC-32 check'
    torch.load(path, weights_only=True)  # what --resume used to go on from


def test_last_checkpoint_is_read_with_a_size_cap_and_against_the_work_dir(tmp_path, monkeypatch):
    _small_checkpoint(tmp_path / 'iter_1.pth')
    _small_checkpoint(tmp_path / 'iter_2.pth')
    (tmp_path / 'last_checkpoint').write_text('iter_1.pth')  # relative: the work dir's file
    monkeypatch.chdir(tmp_path.parent)
    assert find_resume_checkpoint(tmp_path).chosen == str(tmp_path / 'iter_1.pth')

    (tmp_path / 'last_checkpoint').write_bytes(b'x' * 10**6)
    found = find_resume_checkpoint(tmp_path)
    assert found.chosen == str(tmp_path / 'iter_2.pth') and found.pointer is None
    [(path, reason)] = found.rejected
    assert path == str(tmp_path / 'last_checkpoint') and 'over 4096 bytes' in reason


def test_checkpoint_damage_accepts_legacy_files_and_reports_missing_ones(tmp_path):
    legacy = tmp_path / 'legacy.pth'
    torch.save({'w': torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    assert checkpoint_damage(legacy) is None
    assert checkpoint_damage(tmp_path / 'iter_9.pth') == 'it does not exist'


def test_the_newest_checkpoint_is_chosen_by_number_not_by_file_time(tmp_path):
    for number, mtime in ((9, 3000), (10, 1000), (100, 2000)):
        _small_checkpoint(tmp_path / f'iter_{number}.pth')
        os.utime(tmp_path / f'iter_{number}.pth', (mtime, mtime))
    _truncate_half(tmp_path / 'iter_100.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_100.pth'))
    found = find_resume_checkpoint(tmp_path)
    assert found.chosen == str(tmp_path / 'iter_10.pth')
    assert [path for path, _ in found.rejected] == [str(tmp_path / 'iter_100.pth')]


# --- automatic resume from a damaged newest checkpoint -------------------------------------------

def _delete(path: Path) -> None:
    path.unlink()


@pytest.fixture(scope='module')
def reference_weights(tmp_path_factory):
    return weights(run_toy(tmp_path_factory.mktemp('reference')))


@pytest.mark.parametrize('damage, reason', [
    (_truncate_half, 'truncated'),
    (_empty, 'empty (0 bytes)'),
    (_random_bytes, 'not a torch checkpoint'),
    (_delete, 'does not exist'),
    (_flip_bytes_inside_a_tensor, 'fails its CRC-32 check'),
])
def test_resume_skips_a_damaged_newest_checkpoint_and_stays_exact(tmp_path, reference_weights,
                                                                   damage, reason):
    run_toy(tmp_path, crash_at=8)
    newest = tmp_path / 'iter_6.pth'
    assert (tmp_path / 'last_checkpoint').read_text() == str(newest)
    damage(newest)

    cfg, [warning] = _resume_cfg(tmp_path)

    assert cfg.load_from == str(tmp_path / 'iter_3.pth')
    assert f'cannot resume from {newest}' in warning and reason in warning
    assert f'Resuming from {tmp_path / "iter_3.pth"}' in warning
    resumed = run_toy(tmp_path, resume=True, load_from=cfg.load_from)
    assert resumed.iter == 9
    for key, value in reference_weights.items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=0, atol=0, msg=key)


def test_intact_pointer_target_is_used_without_a_warning(tmp_path):
    run_toy(tmp_path, max_iters=6)
    cfg, warnings = _resume_cfg(tmp_path)
    assert cfg.load_from == str(tmp_path / 'iter_6.pth') and warnings == []


def test_without_last_checkpoint_the_newest_intact_file_is_resumed_with_a_warning(tmp_path):
    run_toy(tmp_path, max_iters=6)
    (tmp_path / 'last_checkpoint').unlink()
    cfg, [warning] = _resume_cfg(tmp_path)
    assert cfg.load_from == str(tmp_path / 'iter_6.pth')
    assert 'last_checkpoint is missing' in warning


def test_an_empty_work_dir_starts_from_the_beginning(tmp_path):
    cfg, warnings = _resume_cfg(tmp_path)
    assert cfg.load_from is None and warnings == []


def test_no_intact_checkpoint_stops_with_what_was_tried(tmp_path):
    run_toy(tmp_path, max_iters=6)
    _truncate_half(tmp_path / 'iter_6.pth')
    _empty(tmp_path / 'iter_3.pth')
    with pytest.raises(CheckpointResumeError) as error:
        _resume_cfg(tmp_path)
    message = str(error.value)
    assert 'no intact checkpoint' in message
    assert f'{tmp_path / "iter_6.pth"}: truncated' in message
    assert f'{tmp_path / "iter_3.pth"}: it is empty' in message


def test_resume_path_naming_a_damaged_file_stops_and_names_the_intact_one(tmp_path):
    run_toy(tmp_path, max_iters=6)
    _truncate_half(tmp_path / 'iter_6.pth')
    with pytest.raises(CheckpointResumeError) as error:
        _resume_cfg(tmp_path, load_from=str(tmp_path / 'iter_6.pth'))
    message = str(error.value)
    assert message.startswith(f'cannot resume from {tmp_path / "iter_6.pth"}: truncated')
    assert f'--resume {tmp_path / "iter_3.pth"}' in message


# --- a save that fails ---------------------------------------------------------------------------

class _DiskFullFile:
    """Stands in for the file atomic_write opens: half of the data fits, then the disk is full."""

    def __init__(self, file) -> None:
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def write(self, data: bytes) -> None:
        self.file.write(data[:len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def test_a_full_disk_ends_the_run_with_what_to_do_and_consistent_files(tmp_path, monkeypatch):
    run_toy(tmp_path, max_iters=3)
    real_fdopen = os.fdopen
    opened = []

    def fdopen(fd, mode):
        opened.append(fd)
        return _DiskFullFile(real_fdopen(fd, mode))

    monkeypatch.setattr(utils_fileio.os, 'fdopen', fdopen)
    with pytest.raises(CheckpointSaveError) as error:
        run_toy(tmp_path, max_iters=6, resume=True)
    assert len(opened) == 1  # nothing written after the failed checkpoint

    message = str(error.value)
    assert message.startswith(
        f'could not save checkpoint {tmp_path / "iter_6.pth"}: [Errno 28] No space left on device')
    assert re.search(r'\(it needs [0-9.]+ kB, [0-9.]+ [kMG]B free in ', message)
    assert f'the newest intact checkpoint is {tmp_path / "iter_3.pth"} (last_checkpoint names it)'\
        in message
    assert [p.name for p in tmp_path.glob('*.pth')] == ['iter_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')
    assert not list(tmp_path.glob(f'*{TMP_SUFFIX}'))


@pytest.mark.parametrize('error', [CheckpointSaveError, CheckpointResumeError])
def test_checkpoint_errors_exit_with_their_message_alone(error):
    message = 'could not save checkpoint iter_6.pth: [Errno 28] No space left on device'
    with _Records() as records, pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        raise error(message)
    assert exit_info.value.code == 1
    assert records.messages == [(logging.ERROR, f'{error.__name__}: {message}')]


@pytest.mark.parametrize('argv, environ, expected', [
    (['tools/train.py', 'cfg.py', '--work-dir', 'w'], {},
     'PYTHON tools/train.py cfg.py --work-dir w --resume w/iter_4.pth'),
    (['tools/train.py', 'cfg.py', '--resume', '--cfg-options', 'a=1'], {},
     'PYTHON tools/train.py cfg.py --cfg-options a=1 --resume w/iter_4.pth'),
    (['tools/train.py', 'cfg.py', '--resume', 'w/iter_2.pth', '--amp'], {},
     'PYTHON tools/train.py cfg.py --amp --resume w/iter_4.pth'),
    (['tools/train.py', 'my cfg.py', '--launcher', 'pytorch', '--resume=w/x.pth'],
     {'LOCAL_WORLD_SIZE': '2'},
     "bash tools/dist_train.sh 'my cfg.py' 2 --resume w/iter_4.pth"),
    (['/usr/bin/pytest', '-q'], {}, None),
])
def test_resume_command_repeats_the_run_with_resume(argv, environ, expected):
    expected = expected and expected.replace('PYTHON', shlex.quote(sys.executable))
    assert resume_command('w/iter_4.pth', argv=argv, environ=environ) == expected

"""The choice file of impl='auto': read only what is a cache, merge writers, never block."""
import fcntl
import json
import logging
import os
import multiprocessing
import time

import pytest
from mmengine.logging import MMLogger

from mmreplk.ops.choice_file import ChoiceCache, NotAChoiceFile, read_choices


def test_reads_both_forms_of_entry(tmp_path):
    path = tmp_path / 'choices.json'
    path.write_text(json.dumps({'b1': 'nchw', 'b2': {'impl': 'cpu', 'seconds': {'cpu': 0.1}}}))
    assert read_choices(path) == {'b1': 'nchw', 'b2': 'cpu'}
    assert read_choices(tmp_path / 'missing.json') == {}
    path.write_text(json.dumps({'b1': {'seconds': {}}}))
    with pytest.raises(NotAChoiceFile, match="maps 'b1'"):
        read_choices(path)


def test_a_cache_keeps_its_newest_entries(tmp_path):
    path = tmp_path / 'choices.json'
    cache = ChoiceCache(path, max_entries=5)
    for i in range(8):
        cache.put(f'bucket {i}', 'nchw')
    assert list(json.loads(path.read_text())) == [f'bucket {i}' for i in range(3, 8)]


def test_a_symlinked_cache_stays_a_link(tmp_path):
    target, link = tmp_path / 'real.json', tmp_path / 'link.json'
    target.write_text('{}')
    link.symlink_to(target)
    ChoiceCache(link).put('bucket', 'nchw')
    assert link.is_symlink() and json.loads(target.read_text()) == {'bucket': 'nchw'}


def test_a_held_lock_never_blocks_and_nothing_is_lost(tmp_path):
    path = tmp_path / 'choices.json'
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    holder = os.open(f'{path}.lock', os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        cache = ChoiceCache(path, lock_timeout=0.05)
        cache.put('first', 'nchw')  # returns: the entry waits for the next write
        assert not path.exists() and cache.get('first') == 'nchw'
        fcntl.flock(holder, fcntl.LOCK_UN)
        cache.put('second', 'cpu')
    finally:
        os.close(holder)
        logger.removeHandler(handler)
    assert json.loads(path.read_text()) == {'first': 'nchw', 'second': 'cpu'}
    (record, ) = records
    assert 'left for later' in record.getMessage()


def _write_entries(path, prefix):
    ready = f'{path}.{prefix}-ready'
    open(ready, 'w').close()
    while not all(os.path.exists(f'{path}.{p}-ready') for p in ('first', 'second')):
        time.sleep(0.01)  # both start writing together
    cache = ChoiceCache(path)
    for i in range(60):
        cache.put(f'{prefix} bucket {i}', 'nchw')


def test_two_processes_writing_merge_their_entries(tmp_path):
    path = tmp_path / 'choices.json'
    path.write_text(json.dumps({'earlier': 'cpu'}))
    # fork: the writers need nothing but this module, already imported.
    context = multiprocessing.get_context('fork')
    writers = [context.Process(target=_write_entries, args=(str(path), prefix))
               for prefix in ('first', 'second')]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    stored = json.loads(path.read_text())
    assert stored == {'earlier': 'cpu', **{f'{prefix} bucket {i}': 'nchw'
                                           for prefix in ('first', 'second') for i in range(60)}}

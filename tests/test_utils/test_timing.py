"""The one clock: time_call and time_round_robin read the clock they are given."""
import pytest
import torch

from mmreplk.utils.timing import time_call, time_round_robin


class _Clock:

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_call_reads_the_injected_clock_around_the_work():
    clock = _Clock()

    def work():
        clock.now += 0.25

    assert time_call(work, 'cpu', clock) == 0.25


def test_time_call_raises_what_the_work_raises():
    def work():
        raise torch.OutOfMemoryError('out of memory')

    with pytest.raises(torch.OutOfMemoryError):
        time_call(work, 'cpu', _Clock())


def test_time_round_robin_interleaves_and_times_on_the_clock():
    clock, calls = _Clock(), []
    costs = {'a': 1.0, 'b': 3.0}

    def form(name):
        def work():
            calls.append(name)
            clock.now += costs[name]
        return work

    seconds = time_round_robin({'a': form('a'), 'b': form('b')}, 'cpu', warmup=1, runs=2,
                               clock=clock)
    assert calls == ['a', 'b'] * 3
    assert seconds == {'a': [1.0, 1.0], 'b': [3.0, 3.0]}
    with pytest.raises(ValueError, match='runs >= 1'):
        time_round_robin({'a': form('a')}, 'cpu', runs=0)

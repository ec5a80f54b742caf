"""impl='auto': measuring, bucketing, caching and the per-pass choice, with injected timings.

Nothing here reads the real clock: a :class:`FakeClock` moves only when a toy backend "takes"
its delay, so which backend is slow is decided by the test, not by a loaded machine.
"""
import errno
import json
import logging
import os
import signal
import stat

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger

from mmreplk.ops import (Bucket, DepthwiseBackend, DepthwiseDispatcher, depthwise_conv2d,
                         measure_candidates, use_dispatcher)
from mmreplk.ops import choice_file
from mmreplk.ops.backends import NCHWBackend
from mmreplk.ops.dispatch import BackendDeviceError, summarize
from mmreplk.utils.fileio import AtomicWriteError

CPU = torch.device('cpu')


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class ToyBackend(NCHWBackend):
    """PyTorch's NCHW conv under another name, counting its calls per pass; each call advances
    ``clock`` by ``delay`` and raises ``error`` (a RuntimeError if ``fails``) when given."""

    def __init__(self, name, delay=0.0, fails=False, forbidden=None, clock=None, error=None,
                 skip=None):
        self.name, self.delay, self.forbidden, self.clock = name, delay, forbidden, clock
        self.error = error or (RuntimeError(f'{name} is broken') if fails else None)
        self.skip = skip
        self.calls = {'forward': 0, 'input_grad': 0, 'weight_grad': 0}

    def unsupported(self, pass_name, device, dtype, kernel_size, shape):
        return self.forbidden

    def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
        return self.skip

    def _count(self, pass_name):
        self.calls[pass_name] += 1
        if self.error is not None:
            raise self.error
        if self.clock is not None:
            self.clock.advance(self.delay)

    def forward(self, x, weight, bias):
        self._count('forward')
        return super().forward(x, weight, bias)

    def input_grad(self, grad_out, weight):
        self._count('input_grad')
        return super().input_grad(grad_out, weight)

    def weight_grad(self, x, grad_out, kernel_size):
        self._count('weight_grad')
        return super().weight_grad(x, grad_out, kernel_size)


def _run_passes(x, weight, bias=None, impl='auto'):
    x = x.clone().requires_grad_()
    weight = weight.clone().requires_grad_()
    out = depthwise_conv2d(x, weight, bias, impl=impl)
    out.backward(torch.ones_like(out))
    return out, x.grad, weight.grad


def _toys(*names, **kwargs):
    return [ToyBackend(name, **kwargs) for name in names]


def _dispatcher_with(seconds, backends):
    """A dispatcher whose measurements return ``seconds[pass][backend]``, and its record."""
    measured = []

    def measure(bucket, candidates, device):
        measured.append((bucket.pass_name, tuple(candidates)))
        return {name: seconds[bucket.pass_name][name] for name in candidates}

    return DepthwiseDispatcher(backends, measure=measure), measured


def test_each_pass_runs_its_fastest_backend():
    a, b, c = _toys('a', 'b', 'c')
    seconds = {'forward': {'a': 3.0, 'b': 1.0, 'c': 2.0},
               'input_grad': {'a': 1.0, 'b': 2.0, 'c': 3.0},
               'weight_grad': {'a': 2.0, 'b': 3.0, 'c': 1.0}}
    dispatcher, measured = _dispatcher_with(seconds, [a, b, c])
    x, weight = torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7)
    with use_dispatcher(dispatcher):
        out, grad_x, grad_w = _run_passes(x, weight)
    assert [m[0] for m in measured] == ['forward', 'input_grad', 'weight_grad']
    assert (b.calls['forward'], a.calls['input_grad'], c.calls['weight_grad']) == (1, 1, 1)
    assert sum(a.calls.values()) == sum(b.calls.values()) == sum(c.calls.values()) == 1
    assert {bucket.pass_name: choice.impl for bucket, choice in dispatcher.choices.items()} == {
        'forward': 'b', 'input_grad': 'a', 'weight_grad': 'c'}
    reference = F.conv2d(x, weight, padding=3, groups=3)
    torch.testing.assert_close(out, reference)
    assert '| cpu:' in dispatcher.table() and '| b |' in dispatcher.table()


def test_a_bucket_is_measured_once():
    a, b = _toys('a', 'b')
    seconds = {p: {'a': 1.0, 'b': 2.0} for p in ('forward', 'input_grad', 'weight_grad')}
    dispatcher, measured = _dispatcher_with(seconds, [a, b])
    weight = torch.randn(3, 1, 7, 7)
    with use_dispatcher(dispatcher):
        for size in (9, 13, 15, 11):  # one bucket: H, W <= 16, W not a multiple of 8
            _run_passes(torch.randn(2, 3, size, size), weight)
        assert len(measured) == 3 and dispatcher.measurements == 3
        _run_passes(torch.randn(3, 3, 9, 9), weight)  # N = 3 rounds up to 4: a new bucket
        assert len(measured) == 6
        _run_passes(torch.randn(2, 3, 17, 9), weight)  # H = 17 rounds up to 32
        assert len(measured) == 9
        _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 5, 5))  # another K
        assert len(measured) == 12
    assert a.calls['forward'] == 7 and b.calls['forward'] == 0


def test_bucket_rounds_sizes_up_to_powers_of_two():
    bucket = Bucket.of('forward', CPU, torch.float32, 31, (3, 128, 120, 65))
    assert (bucket.batch, bucket.channels, bucket.height, bucket.width) == (4, 128, 128, 128)
    assert bucket == Bucket.of('forward', CPU, torch.float32, 31, (4, 128, 97, 127))
    assert bucket != Bucket.of('input_grad', CPU, torch.float32, 31, (4, 128, 97, 127))
    assert bucket != Bucket.of('forward', CPU, torch.bfloat16, 31, (4, 128, 97, 127))
    assert not bucket.tf32  # the TF32 switch only keys CUDA fp32 buckets
    assert 'K=31' in str(bucket) and 'H<=128' in str(bucket)


def test_a_candidate_that_raises_is_skipped():
    clock = FakeClock()
    broken, slow, fast = ToyBackend('broken', fails=True), \
        ToyBackend('slow', delay=0.02, clock=clock), ToyBackend('fast', delay=0.01, clock=clock)
    dispatcher = DepthwiseDispatcher([broken, slow, fast], clock=clock)
    x, weight = torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5)
    with use_dispatcher(dispatcher):
        out = depthwise_conv2d(x, weight)
    torch.testing.assert_close(out, F.conv2d(x, weight, padding=2, groups=2))
    (choice, ) = dispatcher.choices.values()
    assert choice.impl == 'fast'
    assert 'broken is broken' in choice.skipped['broken']
    assert set(choice.seconds) == {'slow', 'fast'}


def test_every_candidate_failing_is_an_error():
    dispatcher = DepthwiseDispatcher(_toys('x', 'y', fails=True))
    with use_dispatcher(dispatcher), pytest.raises(RuntimeError, match='every depth-wise conv'):
        depthwise_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5))


def test_a_forced_path_is_honoured_without_measuring():
    a, b = _toys('a', 'b')

    def measure(bucket, candidates, device):
        raise AssertionError('a forced path must not be measured')

    with use_dispatcher(DepthwiseDispatcher([a, b], measure=measure)):
        _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7), impl='b')
    assert a.calls == {'forward': 0, 'input_grad': 0, 'weight_grad': 0}
    assert b.calls == {'forward': 1, 'input_grad': 1, 'weight_grad': 1}


def test_a_forced_path_that_cannot_run_says_why():
    toy = ToyBackend('gpu_only', forbidden='needs a GPU')
    with use_dispatcher(DepthwiseDispatcher([ToyBackend('nchw'), toy])), \
            pytest.raises(RuntimeError, match="impl='gpu_only' cannot run the forward.*needs a GPU"):
        depthwise_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5), impl='gpu_only')


class SmallMapsBackend(ToyBackend):
    """Runs maps of at most 100 pixels only, like the dense-Toeplitz kernel's limit."""

    def unsupported(self, pass_name, device, dtype, kernel_size, shape):
        return 'too many pixels' if shape[2] * shape[3] > 100 else None


def test_a_choice_serves_every_shape_of_its_bucket():
    """9x9 fits a 100-pixel backend, but its bucket (H, W <= 16) holds 15x15, which does not:
    auto never chooses it there, so the 15x15 call that follows runs the same, valid choice."""
    clock = FakeClock()
    small = SmallMapsBackend('small', delay=0.001, clock=clock)
    other = ToyBackend('other', delay=0.2, clock=clock)
    dispatcher = DepthwiseDispatcher([small, other], clock=clock)
    with use_dispatcher(dispatcher):
        depthwise_conv2d(torch.randn(1, 3, 9, 9), torch.randn(3, 1, 7, 7))
        depthwise_conv2d(torch.randn(1, 3, 15, 15), torch.randn(3, 1, 7, 7))
    (choice,) = dispatcher.choices.values()
    assert choice.impl == 'other'
    assert small.calls['forward'] == 0
    # In a bucket whose every shape fits (H, W <= 8), the faster small-map backend wins.
    with use_dispatcher(dispatcher):
        depthwise_conv2d(torch.randn(1, 3, 7, 7), torch.randn(3, 1, 7, 7))
    assert [c.impl for c in dispatcher.choices.values()] == ['other', 'small']


def test_cpu_picks_what_it_measured():
    """The default measuring function on the dispatcher's clock: a backend 200 ms slower per
    call loses every pass, and costs two runs."""
    clock = FakeClock()
    slow, fast = ToyBackend('slow', delay=0.2, clock=clock), \
        ToyBackend('fast', delay=0.001, clock=clock)
    dispatcher = DepthwiseDispatcher([slow, fast], clock=clock)
    with use_dispatcher(dispatcher):
        _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7))
    assert [choice.impl for choice in dispatcher.choices.values()] == ['fast'] * 3
    for choice in dispatcher.choices.values():
        assert choice.seconds == pytest.approx({'slow': 0.2, 'fast': 0.001})
    # Pruned after one untimed and one timed run; the contender ran those plus the final call.
    assert slow.calls == {'forward': 2, 'input_grad': 2, 'weight_grad': 2}
    assert fast.calls == {'forward': 3, 'input_grad': 3, 'weight_grad': 3}


def test_measure_candidates_times_contenders_round_robin():
    calls, clock = [], FakeClock()
    costs = {'a': iter([9.0, 1.0, 2.0, 1.5, 1.0]), 'b': iter([9.0, 2.0, 2.5, 2.0, 2.5])}

    def work(name):
        calls.append(name)
        clock.advance(next(costs[name]))

    results = measure_candidates({'a': lambda: work('a'), 'b': lambda: work('b')}, CPU, runs=3,
                                 clock=clock)
    assert calls == ['a', 'a', 'b', 'b'] + ['a', 'b'] * 3
    # The untimed first run (9 s: compilation) and the pruning run are left out of the median.
    assert results == {'a': 1.5, 'b': 2.5}


def test_measure_candidates_prunes_a_path_far_behind():
    clock = FakeClock()
    runs = {'fast': 0, 'slow': 0}

    def work(name, seconds):
        runs[name] += 1
        clock.advance(seconds)

    results = measure_candidates({'fast': lambda: work('fast', 1.0),
                                  'slow': lambda: work('slow', 10.0)}, CPU, runs=3, clock=clock)
    assert results == {'fast': 1.0, 'slow': 10.0}
    assert runs == {'fast': 2, 'slow': 2}


def test_deterministic_mode_takes_the_fixed_order_without_measuring():
    def measure(bucket, candidates, device):
        raise AssertionError('deterministic mode must not measure')

    dispatcher = DepthwiseDispatcher(['nchw', 'channels_last', 'cpu'], measure=measure)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with use_dispatcher(dispatcher):
            _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7))
    finally:
        torch.use_deterministic_algorithms(previous)
    assert dispatcher.choices == {}  # nothing kept: measuring may start once the mode is off
    assert dispatcher.resolve('forward', 'auto', CPU, torch.float32, 7, (2, 3, 9, 9)) == 'cpu'


def test_deterministic_mode_asks_the_backends_once_per_bucket(monkeypatch):
    dispatcher = DepthwiseDispatcher(['nchw', 'channels_last', 'cpu'])
    asked = []
    candidates = dispatcher.candidates
    monkeypatch.setattr(dispatcher, 'candidates', lambda *args: asked.append(args) or
                        candidates(*args))
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for size in (9, 10, 9):  # one bucket
            assert dispatcher.resolve('forward', 'auto', CPU, torch.float32, 7,
                                      (2, 3, size, size)) == 'cpu'
    finally:
        torch.use_deterministic_algorithms(previous)
    assert len(asked) == 1 and dispatcher.choices == {}


def test_half_precision_on_cpu_never_measures_pytorchs_rounding_paths():
    dispatcher = DepthwiseDispatcher(['nchw', 'channels_last', 'cpu'])
    candidates, skipped = dispatcher.candidates('input_grad', CPU, torch.bfloat16, 7,
                                                (2, 3, 9, 9))
    assert candidates == ['cpu'] and set(skipped) == {'nchw', 'channels_last'}
    # fp32 large-kernel weight gradients skip PyTorch's pathological CPU kernel.
    candidates, skipped = dispatcher.candidates('weight_grad', CPU, torch.float32, 31,
                                                (1, 8, 32, 32))
    assert candidates == ['cpu'] and 'slower' in skipped['nchw']


def test_choices_persist_on_disk(tmp_path):
    cache = tmp_path / 'choices.json'
    seconds = {p: {'a': 2.0, 'b': 1.0} for p in ('forward', 'input_grad', 'weight_grad')}
    first, measured = _dispatcher_with(seconds, _toys('a', 'b'))
    first.cache_file = str(cache)
    x, weight = torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7)
    with use_dispatcher(first):
        _run_passes(x, weight)
    stored = json.loads(cache.read_text())
    assert len(stored) == 3 and set(stored.values()) == {'b'}

    def measure(bucket, candidates, device):
        raise AssertionError('a choice on disk must not be measured again')

    a, b = _toys('a', 'b')
    second = DepthwiseDispatcher([a, b], measure=measure, cache_file=cache)
    with use_dispatcher(second):
        _run_passes(x, weight)
    assert b.calls == {'forward': 1, 'input_grad': 1, 'weight_grad': 1}
    assert second.measurements == 0


def test_a_damaged_disk_cache_is_ignored(tmp_path):
    cache = tmp_path / 'choices.json'
    cache.write_text('{not json')
    dispatcher = DepthwiseDispatcher(_toys('a', 'b'), cache_file=cache)
    with use_dispatcher(dispatcher):
        depthwise_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5))
    assert dispatcher.measurements == 1
    assert cache.read_text() == '{not json'  # not a cache: never replaced


def test_unknown_backend_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown depth-wise conv backends \['cutlass'\]"):
        DepthwiseDispatcher(['nchw', 'cutlass'])


def test_the_default_backends_are_registered():
    names = DepthwiseDispatcher().names
    assert names[:4] == ('nchw', 'channels_last', 'cpu', 'triton')
    assert all(isinstance(DepthwiseDispatcher().backend(n), DepthwiseBackend) for n in names)


# -- the bucket --------------------------------------------------------------------------------
def test_width_alignment_is_part_of_the_bucket():
    aligned = Bucket.of('forward', CPU, torch.float32, 31, (4, 128, 64, 64))
    assert aligned.align == 8 and 'align=8' in str(aligned)
    # W = 56 rounds up to 64 and compiles the same aligned kernel variant: the same bucket.
    assert aligned == Bucket.of('forward', CPU, torch.float32, 31, (4, 128, 60, 56))
    unaligned = Bucket.of('forward', CPU, torch.float32, 31, (4, 128, 64, 60))
    assert unaligned.align == 1 and unaligned != aligned


def test_a_second_width_alignment_is_measured_apart_and_a_second_size_is_not():
    seconds = {p: {'a': 1.0, 'b': 2.0} for p in ('forward', 'input_grad', 'weight_grad')}
    dispatcher, measured = _dispatcher_with(seconds, _toys('a', 'b'))
    weight = torch.randn(3, 1, 7, 7)
    with use_dispatcher(dispatcher):
        _run_passes(torch.randn(2, 3, 16, 16), weight)
        assert len(measured) == 3
        _run_passes(torch.randn(2, 3, 15, 15), weight)  # same power of two, W % 8 != 0
        assert len(measured) == 6
        _run_passes(torch.randn(2, 3, 12, 13), weight)  # both variants known: nothing new
        _run_passes(torch.randn(2, 3, 10, 16), weight)
        assert len(measured) == 6


def test_fp32_precision_set_apart_from_rnn_never_raises(monkeypatch):
    """torch's legacy ``cudnn.allow_tf32`` raises once conv and RNN precisions differ; the bucket
    reads the conv setting through the current API."""
    conv, rnn = torch.backends.cudnn.conv, torch.backends.cudnn.rnn
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'Fake GPU')
    cuda = torch.device('cuda')
    saved = conv.fp32_precision, rnn.fp32_precision
    try:
        conv.fp32_precision, rnn.fp32_precision = 'tf32', 'ieee'
        with pytest.raises(RuntimeError):
            torch.backends.cudnn.allow_tf32  # noqa: B018  (the trap, still there)
        assert Bucket.of('forward', cuda, torch.float32, 31, (8, 128, 64, 64)).tf32
        conv.fp32_precision, rnn.fp32_precision = 'ieee', 'tf32'
        assert not Bucket.of('forward', cuda, torch.float32, 31, (8, 128, 64, 64)).tf32
        assert not Bucket.of('forward', cuda, torch.bfloat16, 31, (8, 128, 64, 64)).tf32
    finally:
        conv.fp32_precision, rnn.fp32_precision = saved


# -- candidates that fail ----------------------------------------------------------------------
@pytest.mark.parametrize('error', [
    torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB'),
    torch.AcceleratorError('CUDA error: out of memory'),
], ids=['caching-allocator', 'cuda'])
def test_an_out_of_memory_candidate_is_skipped_and_not_cached(tmp_path, error):
    cache = tmp_path / 'choices.json'
    clock = FakeClock()
    greedy = ToyBackend('greedy', error=error)
    dispatcher = DepthwiseDispatcher([greedy, ToyBackend('a', delay=2.0, clock=clock),
                                      ToyBackend('b', delay=1.0, clock=clock)],
                                     clock=clock, cache_file=cache)
    x, weight = torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5)
    with use_dispatcher(dispatcher):
        out = depthwise_conv2d(x, weight)
    torch.testing.assert_close(out, F.conv2d(x, weight, padding=2, groups=2))
    (choice, ) = dispatcher.choices.values()
    assert choice.impl == 'b' and 'out of memory' in choice.skipped['greedy']
    assert not cache.exists()  # where memory is free, greedy may win
    # Without an out-of-memory candidate the same choice is cached.
    other = DepthwiseDispatcher([ToyBackend('a', delay=2.0, clock=clock),
                                 ToyBackend('b', delay=1.0, clock=clock)],
                                clock=clock, cache_file=cache)
    with use_dispatcher(other):
        depthwise_conv2d(x, weight)
    assert set(json.loads(cache.read_text()).values()) == {'b'}


@pytest.mark.parametrize('error', [
    torch.AcceleratorError('CUDA error: an illegal memory access was encountered'),
    RuntimeError('Triton Error [CUDA]: an illegal memory access was encountered'),
], ids=['AcceleratorError', 'triton-launch'])
def test_a_device_error_stops_naming_the_backend_and_blames_no_other(error):
    a, faulty, c = ToyBackend('a'), ToyBackend('faulty', error=error), ToyBackend('c')
    dispatcher = DepthwiseDispatcher([a, faulty, c])
    with use_dispatcher(dispatcher), pytest.raises(BackendDeviceError) as raised:
        depthwise_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5))
    message = str(raised.value)
    assert "backend 'faulty'" in message and 'forward K=5' in message
    assert 'MMREPLK_DWCONV_EXCLUDE=faulty' in message and "impl='nchw'" in message
    assert raised.value.backend == 'faulty' and raised.value.__cause__ is error
    assert c.calls['forward'] == 0 and dispatcher.choices == {}


def test_excluded_backends_are_not_measured_but_can_be_forced(monkeypatch):
    monkeypatch.setenv('MMREPLK_DWCONV_EXCLUDE', 'b, c')
    a, b, c = _toys('a', 'b', 'c')
    dispatcher = DepthwiseDispatcher([a, b, c])
    candidates, skipped = dispatcher.candidates('forward', CPU, torch.float32, 5, (1, 2, 8, 8))
    assert candidates == ['a'] and 'MMREPLK_DWCONV_EXCLUDE' in skipped['b']
    with use_dispatcher(dispatcher):
        depthwise_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5), impl='b')
    assert b.calls['forward'] == 1
    with pytest.raises(ValueError, match=r"exclude unknown .*\['cutlass'\]"):
        DepthwiseDispatcher(_toys('a', 'b'), exclude='cutlass')


# -- what is said ------------------------------------------------------------------------------
class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def at(self, level):
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def logged():
    handler = _Records()
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_choices_are_logged_at_debug_and_summarized_in_one_line(logged):
    seconds = {'forward': {'a': 1.0, 'b': 2.0}, 'input_grad': {'a': 2.0, 'b': 1.0},
               'weight_grad': {'a': 1.0, 'b': 2.0}}
    dispatcher, _ = _dispatcher_with(seconds, _toys('a', 'b'))
    with use_dispatcher(dispatcher):
        _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7))
        _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 5, 5))
    assert logged.at(logging.INFO) == [] and logged.at(logging.WARNING) == []
    assert sum('depth-wise conv cpu:' in m for m in logged.at(logging.DEBUG)) == 6
    line = summarize(dispatcher.choices)
    assert line.startswith('6 buckets (measured: 6 in ')
    assert line.endswith('forward: a 2; input_grad: b 2; weight_grad: a 2')


def test_a_failing_backend_is_warned_about_once(logged):
    dispatcher = DepthwiseDispatcher([ToyBackend('broken', fails=True), ToyBackend('a')])
    with use_dispatcher(dispatcher):
        _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7))
    (warning, ) = logged.at(logging.WARNING)
    assert 'broken failed' in warning
    assert all('broken is broken' in c.skipped['broken'] for c in dispatcher.choices.values())


# -- the disk cache ----------------------------------------------------------------------------
def _measure_with_cache(cache, backends=None, buckets=1):
    """A dispatcher on ``cache`` after the forwards of ``buckets`` buckets."""
    seconds = {p: {'a': 2.0, 'b': 1.0} for p in ('forward', 'input_grad', 'weight_grad')}
    seconds = {p: {**times, 'c': 3.0} for p, times in seconds.items()}
    dispatcher, _ = _dispatcher_with(seconds, backends or _toys('a', 'b'))
    dispatcher.cache_file = cache
    with use_dispatcher(dispatcher):
        for kernel_size in range(3, 3 + 2 * buckets, 2):
            depthwise_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, kernel_size, kernel_size))
    return dispatcher


@pytest.mark.parametrize('content', ['null', '5', '[1, 2]', '"nchw"', '{not json', '{"b": 5}',
                                     '\xff\xfe', '[' * 100000],
                         ids=['null', 'number', 'list', 'string', 'not-json', 'not-a-backend',
                              'not-utf8', 'deeply-nested'])
def test_a_file_that_is_not_a_cache_is_warned_about_once_and_kept(tmp_path, logged, content):
    cache = tmp_path / 'choices.json'
    cache.write_bytes(content.encode('latin-1'))
    dispatcher = _measure_with_cache(cache, buckets=2)
    assert dispatcher.measurements == 2
    (warning, ) = logged.at(logging.WARNING)
    assert str(cache) in warning and 'MMREPLK_DWCONV_CACHE' in warning
    assert cache.read_bytes() == content.encode('latin-1')


@pytest.mark.parametrize('kind', ['fifo', 'dev-zero', 'folder', 'too-large', 'under-a-file'])
def test_a_path_that_cannot_hold_a_cache_never_blocks_nor_raises(tmp_path, logged, kind):
    """A FIFO must not hang the reader, /dev/zero must not be read, a huge file not rewritten."""
    cache = tmp_path / 'choices.json'
    if kind == 'fifo':
        os.mkfifo(cache)
    elif kind == 'dev-zero':
        cache = '/dev/zero'
    elif kind == 'folder':
        cache.mkdir()
    elif kind == 'too-large':
        cache.write_text(json.dumps({f'bucket {i}': 'a' for i in range(60000)}))
        size = cache.stat().st_size
        assert size > choice_file.MAX_BYTES
    else:
        (tmp_path / 'file').write_text('')
        cache = tmp_path / 'file' / 'choices.json'
    signal.alarm(30)  # a hang fails the test instead of the suite
    try:
        dispatcher = _measure_with_cache(cache, buckets=2)
    finally:
        signal.alarm(0)
    assert dispatcher.measurements == 2
    assert len(logged.at(logging.WARNING)) == 1
    if kind == 'fifo':
        assert stat.S_ISFIFO(os.stat(cache).st_mode)
    elif kind == 'too-large':
        assert cache.stat().st_size == size


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EROFS, errno.EACCES],
                         ids=['full', 'read-only', 'no-permission'])
def test_a_write_fault_is_one_warning_and_never_reaches_the_forward(tmp_path, logged,
                                                                    monkeypatch, code):
    def fail(data, path):
        raise AtomicWriteError(OSError(code, os.strerror(code)), path, len(data))

    monkeypatch.setattr(choice_file, 'atomic_write', fail)
    cache = tmp_path / 'choices.json'
    dispatcher = _measure_with_cache(cache, buckets=3)
    assert dispatcher.measurements == 3 and not cache.exists()
    (warning, ) = logged.at(logging.WARNING)
    assert 'cannot be written' in warning and os.strerror(code) in warning


def test_a_cached_choice_auto_no_longer_makes_is_measured_again(tmp_path):
    cache = tmp_path / 'choices.json'
    _measure_with_cache(cache)  # caches 'b'
    # 'b' now says auto should not measure it here (e.g. a measured exclusion added since).
    dispatcher = _measure_with_cache(cache, [ToyBackend('a'), ToyBackend('b', skip='too slow'),
                                             ToyBackend('c')])
    assert dispatcher.measurements == 1
    assert [c.impl for c in dispatcher.choices.values()] == ['a']


def test_a_cached_choice_is_taken_from_the_cache(tmp_path):
    cache = tmp_path / 'choices.json'
    _measure_with_cache(cache)
    dispatcher = _measure_with_cache(cache)
    assert dispatcher.measurements == 0
    (choice, ) = dispatcher.choices.values()
    assert (choice.impl, choice.source) == ('b', 'from the cache')


def test_deterministic_mode_reads_no_cache(tmp_path):
    cache = tmp_path / 'choices.json'
    cache.write_text(json.dumps({str(Bucket.of(p, CPU, torch.float32, 7, (2, 3, 9, 9))): 'nchw'
                                 for p in ('forward', 'input_grad', 'weight_grad')}))
    dispatcher = DepthwiseDispatcher(['nchw', 'channels_last', 'cpu'], cache_file=cache)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert dispatcher.resolve('forward', 'auto', CPU, torch.float32, 7, (2, 3, 9, 9),
                                  run_args=lambda name: None) == 'cpu'
    finally:
        torch.use_deterministic_algorithms(previous)

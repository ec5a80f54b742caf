"""impl='auto': measuring, bucketing, caching and the per-pass choice, with injected timings."""
import json
import time

import pytest
import torch
import torch.nn.functional as F

from mmreplk.ops import (Bucket, DepthwiseBackend, DepthwiseDispatcher, depthwise_conv2d,
                         measure_candidates, use_dispatcher)
from mmreplk.ops.backends import NCHWBackend

CPU = torch.device('cpu')


class ToyBackend(NCHWBackend):
    """PyTorch's NCHW conv under another name, counting its calls per pass."""

    def __init__(self, name, delay=0.0, fails=False, forbidden=None):
        self.name, self.delay, self.fails, self.forbidden = name, delay, fails, forbidden
        self.calls = {'forward': 0, 'input_grad': 0, 'weight_grad': 0}

    def unsupported(self, pass_name, device, dtype, kernel_size, shape):
        return self.forbidden

    def _count(self, pass_name):
        self.calls[pass_name] += 1
        if self.fails:
            raise RuntimeError(f'{self.name} is broken')
        time.sleep(self.delay)

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
        for size in (9, 13, 16, 11):  # one bucket: H, W <= 16
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
    assert bucket == Bucket.of('forward', CPU, torch.float32, 31, (4, 128, 97, 128))
    assert bucket != Bucket.of('input_grad', CPU, torch.float32, 31, (4, 128, 97, 128))
    assert bucket != Bucket.of('forward', CPU, torch.bfloat16, 31, (4, 128, 97, 128))
    assert not bucket.tf32  # the TF32 switch only keys CUDA fp32 buckets
    assert 'K=31' in str(bucket) and 'H<=128' in str(bucket)


def test_a_candidate_that_raises_is_skipped():
    broken, slow, fast = ToyBackend('broken', fails=True), ToyBackend('slow', delay=0.02), \
        ToyBackend('fast')
    dispatcher = DepthwiseDispatcher([broken, slow, fast])
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


def test_cpu_picks_what_it_measured():
    """Real clock: a backend made 200 ms slower per call loses every pass, and costs two runs
    (a loaded 2-core machine has delayed a tiny conv by 35 ms: the margin is wide)."""
    slow, fast = ToyBackend('slow', delay=0.2), ToyBackend('fast')
    dispatcher = DepthwiseDispatcher([slow, fast])
    with use_dispatcher(dispatcher):
        _run_passes(torch.randn(2, 3, 9, 9), torch.randn(3, 1, 7, 7))
    assert [choice.impl for choice in dispatcher.choices.values()] == ['fast'] * 3
    for choice in dispatcher.choices.values():
        assert choice.seconds['slow'] > 0.2 > choice.seconds['fast']
    # Pruned after one untimed and one timed run; the contender ran those plus the final call.
    assert slow.calls == {'forward': 2, 'input_grad': 2, 'weight_grad': 2}
    assert fast.calls == {'forward': 3, 'input_grad': 3, 'weight_grad': 3}


def test_measure_candidates_times_contenders_round_robin():
    calls = []
    results = measure_candidates({'a': lambda: calls.append('a'),
                                  'b': lambda: calls.append('b')}, CPU, runs=3)
    assert calls == ['a', 'a', 'b', 'b'] + ['a', 'b'] * 3
    assert all(isinstance(seconds, float) for seconds in results.values())


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
    assert len(json.loads(cache.read_text())) == 1  # rewritten whole


def test_unknown_backend_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown depth-wise conv backends \['cutlass'\]"):
        DepthwiseDispatcher(['nchw', 'cutlass'])


def test_the_default_backends_are_registered():
    names = DepthwiseDispatcher().names
    assert names[:4] == ('nchw', 'channels_last', 'cpu', 'triton')
    assert all(isinstance(DepthwiseDispatcher().backend(n), DepthwiseBackend) for n in names)

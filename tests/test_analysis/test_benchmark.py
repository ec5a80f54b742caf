"""Benchmarks return positive, consistent timings; the CLI prints them."""
from pathlib import Path

import pytest
from helpers import TINY_ARCH, load_tool

from mmreplk.analysis import (BACKBONE_FORMS, BackboneBenchmark, Timing, benchmark_backbone,
                              benchmark_model, time_round_robin)

SEG_CONFIG = Path(__file__).parents[1] / 'data' / 'configs' / 'tiny_upernet_replknet.py'


def test_round_robin_times_every_form_per_round():
    calls = []
    seconds = time_round_robin({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')},
                               device='cpu', warmup=1, runs=3)
    assert calls == ['a', 'b'] * 4
    assert all(len(times) == 3 and min(times) >= 0 for times in seconds.values())


def test_backbone_benchmark_times_the_three_forms():
    result = benchmark_backbone(TINY_ARCH, shape=(64, 64), warmup=0, runs=2, device='cpu')
    assert list(result.timings) == list(BACKBONE_FORMS)
    for timing in result.timings.values():
        assert timing.ms_per_image > 0 and len(timing.seconds) == 2
    assert 'deploy-auto' in result.table() and result.arch == 'custom'


def test_speedup_and_table_read_the_median_times():
    timings = {'train-nchw': Timing('train-nchw', [0.4, 0.2, 0.3], 2),
               'deploy-auto': Timing('deploy-auto', [0.1, 0.5, 0.1], 2)}
    result = BackboneBenchmark('31B', (512, 512), 'cpu', 2, timings)
    assert timings['train-nchw'].ms_per_image == pytest.approx(150.0)  # median 0.3 s / 2 images
    assert result.speedup('train-nchw', 'deploy-auto') == pytest.approx(3.0)
    assert result.speedup('deploy-auto', 'train-nchw') == pytest.approx(1 / 3)
    rows = result.table().splitlines()
    assert rows[0].startswith('RepLKNet-31B backbone forward, 512x512')
    assert rows[2].split() == ['train-nchw', '150.0', '1.00x']
    assert rows[3].split() == ['deploy-auto', '50.0', '3.00x']


def test_model_benchmark_train_and_deploy():
    timings = benchmark_model(SEG_CONFIG, shape=(64, 64), deploy=True, batch_size=2, warmup=1,
                              runs=2, device='cpu')
    assert [t.label for t in timings] == ['train', 'deploy']
    for timing in timings:
        assert timing.images_per_s > 0
        assert timing.images_per_s == pytest.approx(2 / timing.median_s)


def test_cli(capsys):
    tool = load_tool('benchmark.py')
    assert tool.main([str(SEG_CONFIG), '--shape', '64', '64', '--deploy', '--warmup', '0',
                      '--runs', '1']) == 0
    printed = capsys.readouterr().out
    assert 'images/s' in printed and 'deploy vs train' in printed
    with pytest.raises(SystemExit):
        tool.main([])

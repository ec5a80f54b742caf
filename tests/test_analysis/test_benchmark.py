"""Benchmarks return positive, consistent timings; the CLI prints them."""
from pathlib import Path

import pytest
import torch
from helpers import TINY_ARCH, load_tool

from mmreplk.analysis import (BACKBONE_FORMS, BackboneBenchmark, Timing, benchmark_backbone,
                              benchmark_model, build_backbone_forms, time_round_robin)

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


TINY_UNIREPLKNET = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32],
                        kernel_sizes=[[3], [13], [13, 3], [13]])


def test_backbone_benchmark_times_unireplknet_with_its_dilated_branches_folded():
    models = build_backbone_forms(TINY_UNIREPLKNET, list(BACKBONE_FORMS), torch.device('cpu'),
                                  family='UniRepLKNet')
    dilated = [[n for n, _ in m.named_modules() if 'dil_conv_k3_5' in n] for m in models.values()]
    assert dilated[0] and not dilated[1] and not dilated[2]  # training form only
    result = benchmark_backbone(TINY_UNIREPLKNET, shape=(64, 64), warmup=0, runs=1, device='cpu',
                                family='UniRepLKNet')
    assert list(result.timings) == list(BACKBONE_FORMS)
    assert result.table().startswith('UniRepLKNet-custom backbone forward, 64x64')
    with pytest.raises(ValueError, match='unknown backbone family'):
        build_backbone_forms('T', ['deploy-auto'], torch.device('cpu'), family='ConvNeXt')


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
    with pytest.raises(SystemExit):
        tool.main([str(SEG_CONFIG), '--family', 'UniRepLKNet'])


def test_cli_backbone_family(capsys):
    tool = load_tool('benchmark.py')
    assert tool.main(['--backbone', 'T', '--family', 'UniRepLKNet', '--shape', '32', '32',
                      '--warmup', '0', '--runs', '1', '--device', 'cpu']) == 0
    printed = capsys.readouterr().out
    assert printed.startswith('UniRepLKNet-T backbone forward, 32x32')
    assert 'deploy-auto vs deploy-nchw' in printed

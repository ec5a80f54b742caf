"""mmreplk.ops.benchmark and tools/analysis/benchmark_dwconv.py on a tiny Table-1 setting."""
import re
import time

import pytest
import torch

from mmreplk.ops import implementations
from mmreplk.ops.benchmark import (MODES, benchmark_depthwise, depthwise_stack, format_table,
                                   stack_flops, time_stack, valid_stack_flops, valid_taps)

from helpers import load_tool

TINY = dict(kernel_sizes=(3, 7), resolutions=(8, 9), batch_size=2, channels=4, depth=3,
            impls=('nchw', 'channels_last', 'auto'), warmup=0, runs=1)


def test_benchmark_covers_every_cell():
    results = benchmark_depthwise(**TINY)
    assert len(results) == len(MODES) * 2 * 3 * 2
    for cell in results:
        assert cell.ms > 0
        flops = stack_flops(2, 4, cell.resolution, cell.kernel_size, 3, cell.mode)
        assert cell.gflops == pytest.approx(flops / cell.ms / 1e6)
    backends = '|'.join(implementations()[1:])
    for cell in results:
        if cell.impl != 'auto':
            assert cell.resolved == cell.impl
        elif cell.mode == 'forward':
            assert re.fullmatch(f'fwd=({backends})', cell.resolved), cell.resolved
        else:
            assert re.fullmatch(f'fwd=({backends}) dx=({backends}) dw=({backends})',
                                cell.resolved), cell.resolved

    table = format_table(results)
    lines = table.splitlines()
    assert lines[0] == '| mode | R | impl | K=3 | K=7 |'
    assert len(lines) == 2 + len(MODES) * 2 * 3
    assert '| forward_backward | 9 | auto |' in table and ' dw=' in table
    assert table.count('x') >= len(MODES) * 2 * 2 * 2  # a speed-up in every non-reference cell


def test_backward_mode_produces_weight_grads():
    stack = depthwise_stack(3, 5, 2, 'nchw')
    x = torch.randn(1, 3, 7, 7)
    assert time_stack(stack, x, 'forward_backward', warmup=0, runs=1) > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stack.parameters())
    with pytest.raises(ValueError, match='unknown mode'):
        time_stack(stack, x, 'backward')


def test_flops_follow_the_paper_convention():
    # (64, 384, 32, 32), K=31, 24 layers: 2 * 64*384*32*32 * 961 * 24 FLOPs forward.
    forward = stack_flops(64, 384, 32, 31, 24, 'forward')
    assert forward == 2 * 64 * 384 * 32 * 32 * 961 * 24
    assert stack_flops(64, 384, 32, 31, 24, 'forward_backward') == 3 * forward


def test_valid_taps_count_only_taps_inside_the_image():
    assert valid_taps(5, 1) == 25
    assert valid_taps(1, 31) == 1  # one pixel sees only itself
    assert valid_taps(3, 3) == (2 + 3 + 2)**2
    # K >= 2R - 1: every output sees the whole image, R^2 taps each.
    assert valid_taps(16, 31) == 16**4
    assert valid_stack_flops(2, 4, 16, 31, 3, 'forward') == 2 * 2 * 4 * 16**4 * 3
    assert valid_stack_flops(2, 4, 16, 31, 3, 'forward_backward') == 3 * 2 * 2 * 4 * 16**4 * 3
    assert valid_stack_flops(2, 4, 64, 3, 3, 'forward') < stack_flops(2, 4, 64, 3, 3, 'forward')


def test_table_gives_the_fraction_of_peak_and_only_timed_cells():
    cells = [('forward', 8, 5), ('forward_backward', 9, 3)]
    results = benchmark_depthwise(batch_size=1, channels=2, depth=2, impls=('nchw', 'auto'),
                                  warmup=0, runs=1, cells=cells)
    assert [(r.mode, r.resolution, r.kernel_size) for r in results] == [
        cells[0], cells[0], cells[1], cells[1]]
    table = format_table(results, peak_tflops=1.0)
    assert 'TF/s (' in table and '%)' in table
    assert len(table.splitlines()) == 2 + 4  # no row for a (mode, R) that was not timed


def test_tool_writes_table(tmp_path, capsys):
    tool = load_tool('analysis/benchmark_dwconv.py')
    out = tmp_path / 'table.md'
    argv = ['--device', 'cpu', '--kernel-sizes', '5', '--resolutions', '7', '--channels', '2',
            '--depth', '2', '--warmup', '0', '--runs', '1', '--modes', 'forward', '--out', str(out)]
    assert tool.main(argv) == 0
    text = out.read_text()
    assert 'input (1, 2, R, R)' in text  # the CPU default batch is stated
    assert '| forward | 7 | nchw |' in text and '| forward | 7 | auto |' in text
    assert text.strip() in capsys.readouterr().out


@pytest.mark.parametrize('argv, message', [
    (['--kernel-sizes', '4'], 'must be odd'),
    (['--device', 'cuda'], 'no GPU'),
])
def test_tool_rejects_bad_arguments(argv, message, capfd):
    if 'cuda' in argv and torch.cuda.is_available():
        pytest.skip('a GPU is present')
    tool = load_tool('analysis/benchmark_dwconv.py')
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv + ['--resolutions', '5', '--depth', '1', '--runs', '1'])
    assert exit_info.value.code == 1
    captured = capfd.readouterr()
    assert message in captured.out + captured.err


class SlowIdentity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(0.02)
        return x


def test_budget_cuts_the_slowest_paths_to_one_run():
    module, x = SlowIdentity(), torch.randn(1, 1, 2, 2)
    assert time_stack(module, x, 'forward', warmup=1, runs=5, budget_s=0.01) >= 20
    assert module.calls == 2
    time_stack(module, x, 'forward', warmup=0, runs=5)
    assert module.calls == 7

"""mmreplk.ops.benchmark and tools/analysis/benchmark_dwconv.py on a tiny Table-1 setting."""
import pytest
import torch

from mmreplk.ops.benchmark import (MODES, benchmark_depthwise, depthwise_stack, format_table,
                                   stack_flops, time_stack)

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
    resolved = {(c.kernel_size, c.resolved) for c in results if c.impl == 'auto'}
    assert resolved == {(3, 'nchw'), (7, 'cpu')}

    table = format_table(results)
    lines = table.splitlines()
    assert lines[0] == '| mode | R | impl | K=3 | K=7 |'
    assert len(lines) == 2 + len(MODES) * 2 * 3
    assert '| forward_backward | 9 | auto |' in table and '(cpu)' in table
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
    assert tool.main(argv + ['--resolutions', '5', '--depth', '1', '--runs', '1']) == 1
    captured = capfd.readouterr()
    assert message in captured.out + captured.err

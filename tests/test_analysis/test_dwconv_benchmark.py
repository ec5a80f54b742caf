"""mmreplk.analysis.dwconv_benchmark and tools/analysis/benchmark_dwconv.py on a tiny Table-1
setting."""
import re
import time

import pytest
import torch
import torch.nn.functional as F

from mmreplk.analysis.dwconv_benchmark import (MODES, UNIREPLK_FORMS, benchmark_depthwise,
                                               cell_unsupported, depthwise_stack, format_table,
                                               stack_flops, time_stack, unireplk_kernel_sizes,
                                               unireplk_stack, valid_stack_flops, valid_taps)
from mmreplk.ops import (DepthwiseBackend, DepthwiseConv2d, DepthwiseDispatcher, implementations,
                         use_dispatcher)

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


def test_unireplknet_rows_time_its_layer_at_its_kernels():
    assert unireplk_kernel_sizes() == (3, 13)
    results = benchmark_depthwise(kernel_sizes=(3, 7, 13), resolutions=(8, ), batch_size=1,
                                  channels=4, depth=2, impls=('nchw', ), warmup=0, runs=1,
                                  unireplknet=True)
    rows = [(r.mode, r.kernel_size, r.impl) for r in results]
    assert rows == [(mode, k, impl) for mode in MODES for k in (3, 7, 13)
                    for impl in (('nchw', ) + tuple(UNIREPLK_FORMS) if k != 7 else ('nchw', ))]
    assert all(r.ms > 0 and r.resolved.startswith('fwd=') for r in results if r.impl != 'nchw')
    table = format_table(results)
    assert '| forward | 8 | unireplk-train | ' in table
    assert re.search(r'\| forward_backward \| 8 \| unireplk-folded \| [\d.]+ ms.*\| - \| [\d.]+ ms',
                     table)


def test_unireplknet_stack_is_its_layer_trained_and_folded():
    torch.manual_seed(0)
    train = unireplk_stack(4, 13, 2, folded=False)
    assert train.training
    assert sum(isinstance(m, torch.nn.Conv2d) and m.dilation == (5, 5)
               for m in train.modules()) == 2  # a dilated branch per layer
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in train.modules()) == 2 * 7
    small = unireplk_stack(4, 3, 1, folded=False)
    assert [type(m).__name__ for m in small[0]] == ['DepthwiseConv2d', 'BatchNorm2d']
    folded = unireplk_stack(4, 13, 1, folded=True)
    convs = [m for m in folded.modules() if isinstance(m, DepthwiseConv2d)]
    assert not folded.training and len(convs) == 1 and convs[0].bias is not None
    assert convs[0].weight.shape[-1] == 13
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert [m for m in folded.modules() if isinstance(m, torch.nn.Conv2d)] == convs


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
    assert text.split('\n\n![')[0].strip() in capsys.readouterr().out
    # The picture beside the markdown, linked from it.
    figure = tmp_path / 'table.png'
    assert figure.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and '](table.png)' in text


def test_tool_adds_the_unireplknet_rows(capsys):
    tool = load_tool('analysis/benchmark_dwconv.py')
    argv = ['--device', 'cpu', '--kernel-sizes', '3', '--resolutions', '6', '--channels', '4',
            '--depth', '1', '--warmup', '0', '--runs', '1', '--modes', 'forward', '--impls',
            'nchw', '--unireplknet']
    assert tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert '| forward | 6 | unireplk-train |' in printed
    assert '| forward | 6 | unireplk-folded |' in printed


@pytest.mark.parametrize('argv, message', [
    (['--kernel-sizes', '4'], 'must be odd'),
    (['--device', 'cuda'], 'no GPU'),
    (['--kernel-sizes', '7', '--unireplknet'], 'none of which is in --kernel-sizes'),
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


class SmallMapsOnly(DepthwiseBackend):
    """PyTorch's conv, declared unable to run maps wider than 8 (like a kernel with a limit)."""
    name = 'small_maps_only'

    def unsupported(self, pass_name, device, dtype, kernel_size, shape):
        return None if shape[3] <= 8 else f'covers at most 8 columns, got {shape[3]}'

    def forward(self, x, weight, bias):
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=weight.shape[0])


class Broken(SmallMapsOnly):
    """Claims every size, raises on each."""
    name = 'broken'

    def unsupported(self, pass_name, device, dtype, kernel_size, shape):
        return None

    def forward(self, x, weight, bias):
        raise RuntimeError('boom\nsecond line of the message')


def test_each_cell_is_checked_and_a_failing_cell_does_not_end_the_table():
    dispatcher = DepthwiseDispatcher(backends=['nchw', SmallMapsOnly(), Broken()], cache_file='')
    cells = [('forward', 8, 3), ('forward', 16, 3), ('forward', 16, 5)]
    seen = []
    with use_dispatcher(dispatcher):
        results = benchmark_depthwise(batch_size=1, channels=2, depth=1, warmup=0, runs=1,
                                      impls=('nchw', 'small_maps_only', 'broken', 'auto'),
                                      cells=cells, on_result=seen.append)
    assert seen == results and len(results) == 3 * 4
    by_cell = {(r.resolution, r.kernel_size, r.impl): r for r in results}
    # The path runs where it can and is n/a where it cannot, cell by cell.
    assert by_cell[8, 3, 'small_maps_only'].ms > 0
    limited = by_cell[16, 3, 'small_maps_only']
    assert limited.ms is None and limited.gflops is None
    assert limited.unavailable == 'forward: covers at most 8 columns, got 16'
    # A path that raises is reported, and every later cell is still measured.
    assert all(by_cell[r, k, 'broken'].unavailable == 'failed: RuntimeError: boom'
               for r, k in ((8, 3), (16, 3), (16, 5)))
    assert by_cell[16, 5, 'nchw'].ms > 0 and by_cell[16, 5, 'auto'].ms > 0
    assert by_cell[16, 5, 'auto'].resolved == 'fwd=nchw'  # auto skipped both
    table = format_table(results)
    assert ('| forward | 16 | small_maps_only | n/a (forward: covers at most 8 columns, got 16) '
            '| n/a (forward: covers at most 8 columns, got 16) |') in table
    assert '| forward | 16 | broken | n/a (failed: RuntimeError: boom) |' in table


def test_cell_support_is_asked_for_every_pass_of_the_mode():
    class NoWeightGrad(SmallMapsOnly):
        name = 'no_weight_grad'

        def unsupported(self, pass_name, device, dtype, kernel_size, shape):
            return 'no weight gradient' if pass_name == 'weight_grad' else None

    with use_dispatcher(DepthwiseDispatcher(backends=['nchw', NoWeightGrad()], cache_file='')):
        args = (torch.device('cpu'), torch.float32, 3, (1, 2, 8, 8))
        assert cell_unsupported('no_weight_grad', 'forward', *args) is None
        assert cell_unsupported('no_weight_grad', 'forward_backward',
                                *args) == 'weight_grad: no weight gradient'
        assert cell_unsupported('auto', 'forward_backward', *args) is None


def test_paths_auto_skips_can_be_left_untimed_cell_by_cell():
    class SlowOnWideMaps(SmallMapsOnly):
        name = 'slow_on_wide_maps'

        def unsupported(self, pass_name, device, dtype, kernel_size, shape):
            return None

        def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
            return 'measured 5x slower' if shape[3] > 8 else None

    with use_dispatcher(DepthwiseDispatcher(backends=['nchw', SlowOnWideMaps()], cache_file='')):
        results = benchmark_depthwise(batch_size=1, channels=2, depth=1, warmup=0, runs=1,
                                      impls=('nchw', 'slow_on_wide_maps'),
                                      cells=[('forward', 8, 3), ('forward', 16, 3)],
                                      skip_what_auto_skips=['slow_on_wide_maps'])
        timed = benchmark_depthwise(batch_size=1, channels=2, depth=1, warmup=0, runs=1,
                                    impls=('slow_on_wide_maps', ), cells=[('forward', 16, 3)])
    assert [r.unavailable for r in results] == [
        None, None, None, 'not timed, auto skips it: measured 5x slower']
    assert timed[0].ms > 0  # without the option a forced path is timed wherever it can run


def test_a_path_auto_still_runs_for_some_pass_is_timed():
    class SharesItsWeightGrad(SmallMapsOnly):
        name = 'shares_its_weight_grad'

        def unsupported(self, pass_name, device, dtype, kernel_size, shape):
            return None

        def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
            return 'its weight gradient is nchw\'s' if pass_name == 'weight_grad' else None

        def input_grad(self, grad_out, weight):
            return torch.nn.grad.conv2d_input(grad_out.shape, weight, grad_out,
                                              padding=weight.shape[-1] // 2,
                                              groups=weight.shape[0])

        def weight_grad(self, x, grad_out, kernel_size):
            return torch.nn.grad.conv2d_weight(x, (x.shape[1], 1, kernel_size, kernel_size),
                                               grad_out, padding=kernel_size // 2,
                                               groups=x.shape[1])

    backend = SharesItsWeightGrad()
    with use_dispatcher(DepthwiseDispatcher(backends=['nchw', backend], cache_file='')):
        args = (torch.device('cpu'), torch.float32, 3, (1, 2, 8, 8), [backend.name])
        assert cell_unsupported(backend.name, 'forward_backward', *args) is None
        results = benchmark_depthwise(batch_size=1, channels=2, depth=1, warmup=0, runs=1,
                                      impls=(backend.name, ), cells=[('forward_backward', 8, 3)],
                                      skip_what_auto_skips=[backend.name])
    assert results[0].ms > 0

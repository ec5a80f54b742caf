"""tools/analysis/benchmark_gpu.py: its reduced form runs on a CPU and writes every section."""
import re
import time

import pytest
import torch

from mmreplk.analysis.gpu_benchmark import (MarkdownReport, fp32_peak_tflops, run_gpu_benchmark,
                                            time_steps)

from helpers import load_tool


# First in the file: the tool's logger is created on first use and keeps the output stream of
# the test that created it.
def test_cuda_without_a_gpu_exits_with_a_message(capfd):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    tool = load_tool('analysis/benchmark_gpu.py')
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--device', 'cuda'])
    assert exit_info.value.code == 1
    captured = capfd.readouterr()
    assert 'torch sees no GPU' in captured.out + captured.err


def test_quick_form_without_a_report_file_prints_every_section(capsys):
    # The tool's own example: no --out, the report goes to stdout and no figure is drawn.
    tool = load_tool('analysis/benchmark_gpu.py')
    assert tool.main(['--device', 'cpu', '--quick', '--sections', 'backbone', 'inference']) == 0
    text = capsys.readouterr().out
    assert 'train step, fp32' in text and 'folded (deploy) inference' in text
    assert '.png' not in text


def test_quick_form_writes_every_section(tmp_path):
    out = tmp_path / 'report.md'
    tool = load_tool('analysis/benchmark_gpu.py')
    assert tool.main(['--device', 'cpu', '--quick', '--out', str(out)]) == 0
    text = out.read_text()
    for title in ('RepLKNet-custom train step, fp32, batch 2', 'train step, bf16 autocast',
                  'folded (deploy) inference', 'stacked depth-wise layers, (2, 8, R, R), fp32',
                  '(2, 8, R, R), bf16'):
        assert title in text, title
    # auto against nchw in every backbone table, and the first-use cost stated.
    assert len(re.findall(r'^\| auto \| [\d.]+ \| [\d.]+x \|', text, re.M)) == 3
    assert re.search(r'First use of `auto` at 64x64: -?[\d.]+ s over a steady step '
                     r'\((\d+) buckets measured', text)
    measured = int(re.search(r'\((\d+) buckets measured', text).group(1))
    assert measured > 0
    # A second height in the same buckets measures nothing.
    assert text.count('A new height in the same buckets (56x64): 0 buckets measured') == 2
    assert 'measured again' not in text
    assert re.search(r'\| forward_backward \| 8 \| auto \| .*\(fwd=\w+ dx=\w+ dw=\w+\) \|', text)
    for section in ('backbone', 'inference', 'table1'):
        assert f'<!-- section {section}:' in text
    # The pictures beside the markdown, linked from it.
    for name in ('train_step', 'inference', 'table1_fp32', 'table1_bf16'):
        figure = tmp_path / f'report_{name}.png'
        assert figure.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
        assert f'](report_{name}.png)' in text


def test_a_failing_section_is_reported_and_the_next_one_runs(tmp_path, monkeypatch):
    from mmreplk.analysis import gpu_benchmark

    def broken(*args, **kwargs):
        raise RuntimeError('backbone exploded')

    monkeypatch.setattr(gpu_benchmark, 'benchmark_inference', broken)
    report = MarkdownReport(tmp_path / 'report.md')
    failed = run_gpu_benchmark(report, 'cpu', sections=('inference', 'table1'),
                               precisions=('fp32', ), table1_cells=(('forward', 8, 3), ),
                               table1_batch=1, table1_channels=2, table1_depth=1, runs=1,
                               budget_s=0.0)
    text = (tmp_path / 'report.md').read_text()
    assert failed == ['inference']
    assert '**Section inference failed**: RuntimeError: backbone exploded' in text
    assert '| forward | 8 | auto |' in text and '<!-- section table1:' in text


def test_report_is_written_as_it_goes(tmp_path):
    report = MarkdownReport(tmp_path / 'partial.md')
    with pytest.raises(ValueError, match='unknown sections'):
        run_gpu_benchmark(report, 'cpu', sections=('table1', 'nonsense'))
    report.write('one line')
    assert (tmp_path / 'partial.md').read_text() == 'one line\n'


def test_time_steps_counts_the_first_step_apart():
    calls = []

    def step():
        # The first step is the slow one (compilation, tuning, measuring).
        time.sleep(0.05 if not calls else 0.0)
        calls.append(1)

    result = time_steps(step, torch.device('cpu'), 4, 'noop', runs=3)
    assert len(calls) == 4 and result.peak_gib is None
    assert result.first_s >= 0.05  # the slow first step is not among the steady ones
    assert result.images_per_s == pytest.approx(4 / result.median_s)


def test_peak_of_known_gpus_only():
    assert fp32_peak_tflops(torch.device('cpu')) is None



def test_backbones_select_the_unireplknet_rows():
    tool = load_tool('analysis/benchmark_gpu.py')
    rows = ['UniRepLKNet-T', 'UniRepLKNet-S']
    assert tool.run_options(tool.parse_args(['--backbones', *rows]))['backbones'] == [
        ('UniRepLKNet', 'T'), ('UniRepLKNet', 'S')]
    # The reduced forms time one tiny backbone per family named.
    dry = tool.run_options(tool.parse_args(['--dry-run', '--backbones', 'RepLKNet-31B', *rows]))
    assert dry['backbones'] == [('RepLKNet', tool.TINY_ARCH),
                                ('UniRepLKNet', tool.TINY_UNIREPLKNET)]
    assert 'backbones' not in tool.run_options(tool.parse_args([]))  # RepLKNet-31B alone
    with pytest.raises(SystemExit):
        tool.parse_args(['--arch', '31L', '--backbones', 'UniRepLKNet-T'])


def test_the_compile_count_covers_unireplknet_large_kernels():
    from mmreplk.analysis.triton_compiles import gpu_run_calls
    args = (('backbone', 'inference'), ('fp32', ))
    shapes = dict(batch_size=2, size=128, second_height=96, table1_cells=(), table1_batch=1,
                  table1_channels=1)
    replknet = gpu_run_calls(*args, [('RepLKNet', '31B')], **shapes)
    both = gpu_run_calls(*args, [('RepLKNet', '31B'), ('UniRepLKNet', 'T')], **shapes)
    unireplknet = both[len(replknet):]
    assert both[:len(replknet)] == replknet
    # T's 13x13 kernels, its K=5 undilated branch and its 3x3 convs run through the op; the
    # dilated branches (PyTorch's conv) do not.
    assert {call[2] for call in unireplknet} == {3, 5, 13}
    assert {call[0] for call in unireplknet} == {'forward', 'input_grad', 'weight_grad'}

"""tools/analysis/benchmark_gpu.py: its reduced form runs on a CPU and writes every section."""
import re

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


def test_quick_form_writes_every_section(tmp_path):
    out = tmp_path / 'report.md'
    tool = load_tool('analysis/benchmark_gpu.py')
    assert tool.main(['--device', 'cpu', '--quick', '--out', str(out)]) == 0
    text = out.read_text()
    for title in ('Train step, fp32, batch 2', 'Train step, bf16 autocast', 'Folded (deploy)',
                  'stacked depth-wise layers, (2, 8, R, R), fp32', '(2, 8, R, R), bf16'):
        assert title in text, title
    # auto against nchw in every backbone table, and the first-use cost stated.
    assert len(re.findall(r'^\| auto \| [\d.]+ \| [\d.]+x \|', text, re.M)) == 3
    assert re.search(r'First use of `auto` at 64x64: -?[\d.]+ s over a steady step '
                     r'\(\d+ buckets measured', text)
    # A second size in the same buckets measures nothing.
    assert 'A new size in the same buckets (56x56): 0 buckets measured' in text
    assert re.search(r'\| forward_backward \| 8 \| auto \| .*\(fwd=\w+ dx=\w+ dw=\w+\) \|', text)
    for section in ('backbone', 'inference', 'table1'):
        assert f'<!-- section {section}:' in text


def test_report_is_written_as_it_goes(tmp_path):
    report = MarkdownReport(tmp_path / 'partial.md')
    with pytest.raises(ValueError, match='unknown sections'):
        run_gpu_benchmark(report, 'cpu', sections=('table1', 'nonsense'))
    report.write('one line')
    assert (tmp_path / 'partial.md').read_text() == 'one line\n'


def test_time_steps_counts_the_first_step_apart():
    calls = []
    result = time_steps(lambda: calls.append(1), torch.device('cpu'), 4, 'noop', runs=3)
    assert len(calls) == 4 and result.peak_gib is None
    assert result.images_per_s == pytest.approx(4 / result.median_s)


def test_peak_of_known_gpus_only():
    assert fp32_peak_tflops(torch.device('cpu')) is None


"""tools/analysis/gpu_session.sh rehearsed on the CPU, and what the GPU box can import.

The GPU box has torch, Triton, numpy, pytest, timm, OpenCV, Pillow, matplotlib, rich, PyYAML
and the wheels of ``WHEELS=(...)`` in gpu_session.sh, nothing else (no mmseg, mmdet,
pycocotools or compiled ``mmcv.ops``); tools/analysis/gpu_box_python.py runs Python with only
that importable.
"""
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch

from mmreplk.analysis.gpu_benchmark import TABLE1_CELLS, table1_impls

ROOT = Path(__file__).parents[2]
SESSION = ROOT / 'tools' / 'analysis' / 'gpu_session.sh'
GPU_BOX_PYTHON = ROOT / 'tools' / 'analysis' / 'gpu_box_python.py'
PARTS = ('setup', 'compiles', 'tests_new_kernels', 'tests_cuda', 'table1', 'backbone',
         'inference', 'unireplknet')


def _run(args, timeout=300, **env):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1',
                               **env})


def _gpu_box(code: str, *flags: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(GPU_BOX_PYTHON), *flags, '-c', code], timeout=120)


def test_dry_run_walks_every_part_section_and_table1_cell(tmp_path):
    result = _run(['bash', str(SESSION), '--dry-run'], timeout=900, OUT=str(tmp_path),
                  PYTHON=sys.executable)
    session = (tmp_path / 'session.md').read_text()
    assert result.returncode == 0, session + result.stdout[-3000:]
    for part in PARTS:
        assert re.search(rf'^- [\d:]+ {part}: passed \(rc=0\)', session, re.M), part
    assert '0 part(s) failed or stopped' in session
    # The expected compiles of the real run are printed (counted, not zero).
    count = re.search(r'expected Triton compiles: (\d+) \((\d+) autotunings', session)
    assert count and int(count.group(1)) > int(count.group(2)) > 0
    # pytest -v with a junit report per test part; every CUDA test selected by one part.
    selected = 0
    for part in ('tests_new_kernels', 'tests_cuda'):
        suite = ElementTree.parse(tmp_path / f'junit_{part}.xml').getroot().find('testsuite')
        assert int(suite.get('errors')) == int(suite.get('failures')) == 0
        selected += int(suite.get('tests'))
        log = (tmp_path / f'{part}.log').read_text()
        assert 'PASSED' in log or 'SKIPPED' in log  # pytest -v: one line per test
    assert selected > 0
    # Every Table-1 cell of every table, each measured or n/a with a reason, never failed.
    table1 = (tmp_path / 'table1.md').read_text()
    cells = re.findall(r'^<!-- (\w+) R=(\d+) K=(\d+) (\w+): (.*) -->$', table1, re.M)
    impls = table1_impls(torch.device('cpu'))
    expected = [(mode, str(r), str(k), impl) for mode, r, k in TABLE1_CELLS for impl in impls]
    fp32, bf16, tf32_off = (expected, expected, expected[:len(impls)])
    assert [cell[:4] for cell in cells] == fp32 + bf16 + tf32_off
    assert not [cell for cell in cells if 'failed' in cell[4]]
    assert re.search(r'forward R=64 K=31 triton_toeplitz: n/a \(forward: ', table1)
    assert table1.count('### 1 stacked depth-wise layers, (1, 1, R, R), fp32') == 2
    # Both backbone sections ran; a new height measured nothing.
    backbone = (tmp_path / 'backbone.md').read_text()
    assert backbone.count('0 buckets measured, 0 Triton tunings (expected: 0 and 0)') == 2
    assert '| auto |' in (tmp_path / 'inference.md').read_text()
    # The UniRepLKNet part, last: its train step (a new height measures nothing there too) and
    # folded inference, at a tiny size.
    unireplknet = (tmp_path / 'unireplknet.md').read_text()
    assert '### UniRepLKNet-custom train step, fp32' in unireplknet
    assert '0 buckets measured, 0 Triton tunings (expected: 0 and 0)' in unireplknet
    assert 'RepLKNet-custom' not in unireplknet.replace('UniRepLKNet-custom', '')
    assert re.search(r'^- [\d:]+ unireplknet: passed', session.split('inference: passed')[1], re.M)
    for figure in ('table1_fp32', 'table1_bf16', 'table1_fp32_tf32_off', 'backbone_train_step',
                   'inference', 'unireplknet_train_step', 'unireplknet_inference'):
        assert (tmp_path / f'{figure}.png').read_bytes()[:4] == b'\x89PNG', figure


def test_the_gpu_box_python_refuses_what_the_box_lacks():
    modules = ['pycocotools', 'mmseg', 'mmdet', 'mmcv.ops']
    code = ('import importlib\n'
            f'for name in {modules!r}:\n'
            '    try:\n'
            '        importlib.import_module(name)\n'
            '    except ModuleNotFoundError as error:\n'
            '        print(error)\n'
            'import mmcv, mmengine; print("mmcv and mmengine import")')
    result = _gpu_box(code)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.splitlines()
    assert printed == [f'{name} is not on the GPU box (refused by gpu_box_python.py)'
                       for name in modules] + ['mmcv and mmengine import']


def test_op_backbone_and_benchmark_import_with_only_the_gpu_box(tmp_path):
    result = _gpu_box('import mmreplk.ops, mmreplk.models, mmreplk.analysis.gpu_benchmark, '
                      'mmreplk.analysis.triton_compiles; import mmreplk.ops as ops; '
                      'print(len(ops.implementations()))', '--only-gpu-box')
    assert result.returncode == 0, result.stderr[-3000:]
    # A distribution neither on the box nor among the wheels is refused to our code ...
    result = _gpu_box('import terminaltables', '--only-gpu-box')
    assert 'terminaltables' in result.stderr and 'is not on the GPU box' in result.stderr


def test_the_wheel_list_is_needed_entry_by_entry():
    # Without addict in WHEELS=(...), mmengine (and so mmreplk) no longer imports.
    code = ('import sys; sys.path.insert(0, "tools/analysis"); import gpu_box_python as box; '
            'wheels = [w for w in box.session_wheels() if w != "addict"]; '
            'sys.meta_path.insert(0, box.RefusingFinder(box.box_distributions(), '
            'box.wheel_distributions(wheels))); import mmreplk.models')
    result = _run([sys.executable, '-c', code], timeout=120)
    assert result.returncode != 0 and "addict (from ['addict']) is not on the GPU box" in \
        result.stderr


def test_the_wheel_list_is_read_from_the_session_script():
    sys.path.insert(0, str(GPU_BOX_PYTHON.parent))
    try:
        import gpu_box_python
    finally:
        sys.path.remove(str(GPU_BOX_PYTHON.parent))
    wheels = gpu_box_python.session_wheels()
    assert wheels[:2] == ['mmengine', 'mmcv-lite'] and 'addict' in wheels
    assert 'mmcv' in gpu_box_python.wheel_distributions(wheels)


COUNT_CODE = '''
import json
import torch
from mmreplk.analysis.dwconv_benchmark import is_triton_backend
from mmreplk.analysis.triton_compiles import count_compiles
from mmreplk.ops import implementations
impl = next(name for name in implementations()[1:] if is_triton_backend(name))
def count(*calls):
    result = count_compiles([(p, shape, k, torch.float32, True, impl) for p, shape, k in calls])
    assert not result.errors, result.errors
    return result.total, sum(result.tunings.values())
one = count(('forward', (2, 8, 32, 32), 31))
same_bucket = count(('forward', (2, 8, 32, 32), 31), ('forward', (2, 8, 32, 32), 31),
                    ('forward', (2, 8, 32, 32), 31))
new_height = count(('forward', (2, 8, 32, 32), 31), ('forward', (2, 8, 30, 32), 31))
new_kernel = count(('forward', (2, 8, 32, 32), 31), ('forward', (2, 8, 32, 32), 13))
print(json.dumps([impl, one, same_bucket, new_height, new_kernel]))
'''


def test_expected_compiles_follow_the_autotuner_keys():
    result = _run([sys.executable, '-c', COUNT_CODE], timeout=120, TRITON_INTERPRET='1')
    assert result.returncode == 0, result.stderr[-3000:]
    impl, *counts = json.loads(result.stdout.splitlines()[-1])
    one, same, height, kernel = map(tuple, counts)
    compiles, tunings = one
    assert tunings >= 1 and compiles >= 2 * tunings  # every config of a new key compiles
    assert same == one  # repeats compile nothing
    # A height in the same bucket: no new tuning; at most one more compile per kernel (a new
    # divisibility by 16, for kernels that let Triton specialise on their sizes).
    assert height[1] == tunings and one[0] <= height[0] <= one[0] + tunings
    assert kernel == (2 * compiles, 2 * tunings)  # K is in the key


def test_a_part_past_its_limit_is_recorded_and_the_next_one_runs(tmp_path):
    # Every part gets 1 s (no dry-run factor), less than any part takes even on an idle machine
    # (each starts Python and imports torch): each is stopped, recorded, and the next one runs.
    limits = {f'MMREPLK_GPU_{part.upper()}_S': '1' for part in PARTS}
    limits['MMREPLK_GPU_DRY_FACTOR'] = '1'
    result = _run(['bash', str(SESSION), '--dry-run'], timeout=300, OUT=str(tmp_path),
                  PYTHON=sys.executable, **limits)
    session = (tmp_path / 'session.md').read_text()
    assert result.returncode != 0
    for part in PARTS:
        assert re.search(rf'^- [\d:]+ {part}: stopped at its time limit \(rc=124\) after \d+ s$',
                         session, re.M), session
    assert f'{len(PARTS)} part(s) failed or stopped' in session

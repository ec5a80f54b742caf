"""The tensor-core kernel families on CPU tensors through Triton's interpreter (TRITON_INTERPRET=1).

Every family's forward, input gradient and weight gradient against a float64 ``F.conv2d``: fp32
with ``allow_tf32`` off ('fp32', fp32-accurate) and on ('tf32', within the stated TF32 bound),
fp16 and bf16. The cases run in one subprocess per group (see triton_tc_interpreter_cases.py).
"""
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmreplk.ops import triton_available

from .tolerances import TOLERANCES

pytestmark = pytest.mark.skipif(not triton_available(),
                                reason='triton is not installed (pip install triton)')

WORKER = Path(__file__).with_name('triton_tc_interpreter_cases.py')
FAMILY_NAMES = ('triton_banded', 'triton_toeplitz')
MODES = ('fp32', 'tf32', 'fp16', 'bf16')

# (N, C, H, W, K) with the interpreter's 16 x 16 tiles: odd sizes; batch 1 and > 1; images smaller
# than the kernel (every tap valid: the dense-Toeplitz case) and larger than one tile.
# 17 images span two of the dense-Toeplitz family's 16-image tiles.
SMALL_SHAPES = [(2, 2, 9, 11, 13), (1, 1, 13, 19, 7), (3, 1, 7, 5, 31), (1, 1, 11, 23, 27),
                (2, 1, 17, 21, 29), (17, 1, 5, 7, 13)]
# Several tiles of every autotune candidate (up to 128 rows and 32 columns or 128 pixels).
LARGE_SHAPES = [(5, 1, 29, 33, 31), (1, 1, 67, 41, 13)]


def _cases(shapes, all_configs=False):
    cases = []
    combos = itertools.product(shapes, FAMILY_NAMES, MODES)
    for (shape, family, mode), bias in zip(combos, itertools.cycle([True, False, False])):
        n, c, h, w, _ = shape
        if family == 'triton_toeplitz' and h * w > 1024:
            continue
        name = f'{family}-{mode}-{"x".join(map(str, shape))}-{"bias" if bias else "nobias"}'
        cases.append(dict(name=name, family=family, dtype=mode, shape=shape, bias=bias,
                          all_configs=all_configs))
    return cases


def _run_worker(cases):
    env = dict(os.environ, TRITON_INTERPRET='1')
    root = Path(__file__).parents[2]
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(root), env.get('PYTHONPATH')]))
    proc = subprocess.run([sys.executable, str(WORKER), json.dumps(cases)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def small_results():
    return _run_worker(_cases(SMALL_SHAPES))


@pytest.fixture(scope='module')
def large_results():
    return _run_worker(_cases(LARGE_SHAPES, all_configs=True))


def _check(errors, mode):
    assert {name.split('@')[0] for name in errors} == {'out', 'grad_x', 'grad_w'}
    for name, error in errors.items():
        if mode == 'tf32':
            # |err| <= 2^-9 sum |a b| + 1e-5 max |ref|, entry by entry.
            assert error['tf32_bound'] <= 1, f'{name}: {error["tf32_bound"]:.2f} x the TF32 bound'
        else:
            tolerance = TOLERANCES[mode]
            assert error['relative'] <= tolerance, (
                f'{name}: relative error {error["relative"]:.2e} > {tolerance:.0e}')


@pytest.mark.parametrize('case', _cases(SMALL_SHAPES), ids=lambda case: case['name'])
def test_tc_family_matches_conv2d_interpreted(small_results, case):
    _check(small_results[case['name']], case['dtype'])


@pytest.mark.slow
@pytest.mark.parametrize('case', _cases(LARGE_SHAPES, all_configs=True),
                         ids=lambda case: case['name'])
def test_tc_every_config_matches_conv2d_interpreted(large_results, case):
    _check(large_results[case['name']], case['dtype'])

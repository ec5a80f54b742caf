"""The Triton kernels on CPU tensors through Triton's interpreter (TRITON_INTERPRET=1).

The interpreter is chosen when the kernels are decorated, so the cases run in one subprocess per
group (see triton_interpreter_cases.py) and the setting never reaches the other tests.
"""
import itertools
from pathlib import Path

import pytest

from mmreplk.ops import triton_available

from .interpreter import run_interpreter_worker
from .tolerances import TOLERANCES

pytestmark = pytest.mark.skipif(not triton_available(),
                                reason='triton is not installed (pip install triton)')

WORKER = Path(__file__).with_name('triton_interpreter_cases.py')

# (N, C, H, W, K): odd sizes, batch 1 and 2, images narrower and wider than one 16x16 tile,
# kernels larger than the image.
SMALL_SHAPES = [(2, 3, 9, 11, 5), (1, 2, 13, 7, 13), (2, 2, 5, 17, 3), (1, 1, 7, 9, 31)]
LARGE_SHAPES = [(2, 2, 33, 21, 27), (3, 1, 19, 37, 31)]
DTYPE_NAMES = ('fp32', 'fp16', 'bf16')


def _cases(shapes):
    cases = []
    for (shape, dtype), bias in zip(itertools.product(shapes, DTYPE_NAMES),
                                    itertools.cycle([True, False])):
        name = f'{dtype}-{"x".join(map(str, shape))}-{"bias" if bias else "nobias"}'
        cases.append(dict(name=name, shape=shape, dtype=dtype, bias=bias))
    return cases


# Every tile configuration the autotuner may pick on a GPU, on images spanning several tiles (the
# configurations differ in tiling only, so one dtype covers their indexing).
CONFIG_CASES = [dict(name='all-configs-fp32', shape=(3, 1, 23, 37, 31), dtype='fp32', bias=True,
                     all_configs=True)]


def _run_worker(cases):
    return run_interpreter_worker(WORKER, cases, timeout=900)


# Each tensor-core family through the registered op and its autograd formula (their kernels'
# own exactness suite is test_triton_tc_interpreter.py).
OP_CASES = [dict(name=f'{impl}-{dtype}-2x3x9x11x7', shape=(2, 3, 9, 11, 7), dtype=dtype,
                 bias=True, impl=impl)
            for impl in ('triton_banded', 'triton_toeplitz') for dtype in ('fp32', 'bf16')]


@pytest.fixture(scope='module')
def small_results():
    return _run_worker(_cases(SMALL_SHAPES) + OP_CASES)


@pytest.fixture(scope='module')
def large_results():
    return _run_worker(_cases(LARGE_SHAPES) + CONFIG_CASES)


def _check(errors, dtype):
    tolerance = TOLERANCES[dtype]
    assert errors, 'the worker returned no errors for this case'
    for name, error in errors.items():
        assert error <= tolerance, f'{name}: relative error {error:.2e} > {tolerance:.0e}'


@pytest.mark.parametrize('case', _cases(SMALL_SHAPES), ids=lambda case: case['name'])
def test_triton_matches_conv2d_interpreted(small_results, case):
    errors = small_results[case['name']]
    assert set(errors) == {'out', 'grad_x', 'grad_w'} | ({'grad_b'} if case['bias'] else set())
    _check(errors, case['dtype'])


@pytest.mark.parametrize('case', OP_CASES, ids=lambda case: case['name'])
def test_tensor_core_families_through_the_op(small_results, case):
    errors = small_results[case['name']]
    assert set(errors) == {'out', 'grad_x', 'grad_w', 'grad_b'}
    _check(errors, case['dtype'])


@pytest.mark.slow
@pytest.mark.parametrize('case', _cases(LARGE_SHAPES) + CONFIG_CASES, ids=lambda case: case['name'])
def test_triton_matches_conv2d_interpreted_large(large_results, case):
    _check(large_results[case['name']], case['dtype'])

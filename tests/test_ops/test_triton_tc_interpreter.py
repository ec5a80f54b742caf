"""The tensor-core kernel families on CPU tensors through Triton's interpreter (TRITON_INTERPRET=1).

Every family's forward, input gradient and weight gradient against a float64 ``F.conv2d``: fp32
with ``allow_tf32`` off ('fp32', fp32-accurate) and on ('tf32', within the stated TF32 bound),
fp16 and bf16. The cases run in one subprocess per group (see triton_tc_interpreter_cases.py).
"""
from pathlib import Path

import pytest

from mmreplk.ops import triton_available

from .interpreter import run_interpreter_worker
from .tolerances import TOLERANCES

pytestmark = pytest.mark.skipif(not triton_available(),
                                reason='triton is not installed (pip install triton)')

WORKER = Path(__file__).with_name('triton_tc_interpreter_cases.py')
FAMILY_NAMES = ('triton_banded', 'triton_toeplitz')
MODES = ('fp32', 'tf32', 'fp16', 'bf16')

# (N, C, H, W, K) with the interpreter's 16 x 16 tiles: odd sizes; batch 1 and > 1; images smaller
# than the kernel (every tap valid: the dense-Toeplitz case) and larger than one tile; a width
# divisible by 8 (aligned slices). 17 images span two of the dense-Toeplitz family's 16-image tiles.
SMALL_SHAPES = [(2, 2, 9, 11, 13), (1, 1, 13, 24, 7), (3, 1, 7, 5, 31), (1, 1, 11, 23, 27),
                (2, 1, 17, 21, 29), (17, 1, 5, 7, 13)]


def _cases(shapes, every_mode=False):
    """Both families on every shape, in every mode or (default) one mode each, cycling so each
    family still meets every mode and the modes meet several K and batch sizes."""
    cases = []
    for index, shape in enumerate(shapes):
        for offset, family in enumerate(FAMILY_NAMES):
            modes = MODES if every_mode else [MODES[(index + 2 * offset) % len(MODES)]]
            for mode in modes:
                cases.append(_case(family, mode, shape, bias=len(cases) % 3 == 0))
    return cases


def _case(family, mode, shape, bias, all_configs=False):
    name = f'{family}-{mode}-{"x".join(map(str, shape))}-{"bias" if bias else "nobias"}'
    name += '-all-configs' if all_configs else ''
    return dict(name=name, family=family, dtype=mode, shape=shape, bias=bias,
                all_configs=all_configs)


# The autotune candidates the interpreter's fixed tiles do not cover (n-major rows, kernel-row
# groups), on one small map.
SMALL_CONFIG_CASES = [_case('triton_banded', 'fp32', (3, 1, 9, 5, 27), bias=True,
                            all_configs=True)]


# Every tile configuration the autotuner may pick on a GPU, on images spanning several of its
# tiles (up to 128 rows and 32 columns, or 128 pixels); the configurations differ in tiling only,
# so one mode covers their indexing.
CONFIG_CASES = [_case(family, 'fp32', shape, bias=True, all_configs=True)
                for family, shape in (('triton_banded', (5, 1, 29, 40, 31)),
                                      ('triton_banded', (2, 1, 67, 41, 13)),
                                      ('triton_toeplitz', (5, 1, 29, 32, 31)),
                                      ('triton_toeplitz', (3, 1, 23, 37, 27)))]


def _run_worker(cases):
    return run_interpreter_worker(WORKER, cases, timeout=1800)


@pytest.fixture(scope='module')
def small_results():
    return _run_worker(_cases(SMALL_SHAPES) + SMALL_CONFIG_CASES)


@pytest.fixture(scope='module')
def large_results():
    return _run_worker(_cases(SMALL_SHAPES, every_mode=True) + CONFIG_CASES)


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


@pytest.mark.parametrize('case', _cases(SMALL_SHAPES) + SMALL_CONFIG_CASES,
                         ids=lambda case: case['name'])
def test_tc_family_matches_conv2d_interpreted(small_results, case):
    _check(small_results[case['name']], case['dtype'])


@pytest.mark.slow
@pytest.mark.parametrize('case', _cases(SMALL_SHAPES, every_mode=True) + CONFIG_CASES,
                         ids=lambda case: case['name'])
def test_tc_family_matches_conv2d_interpreted_every_mode_and_config(large_results, case):
    _check(large_results[case['name']], case['dtype'])

"""The tensor-core kernels compile for an H100 (sm_90) on any machine, GPU or not.

The PTX shows which units the dots use: fp32 with ``allow_tf32`` off ('ieee') must stay on
CUDA-core FMAs with no TF32 anywhere; fp32 with it on ('tf32') and fp16/bf16 must reach the
tensor cores (mma / wgmma).
"""
import re

import pytest

from mmreplk.ops import triton_available

pytestmark = pytest.mark.skipif(not triton_available(),
                                reason='triton is not installed (pip install triton)')

H100 = ('cuda', 90, 32)
SIZES = ('N', 'C', 'H', 'W', 'N_BUCKET', 'H_BUCKET', 'W_BUCKET')
# (operand dtype, dot precision) of the three precision rules.
MODES = [('fp32', 'ieee'), ('fp32', 'tf32'), ('fp16', 'ieee'), ('bf16', 'ieee')]


def _compile(kernel_name, dtype, precision, kernel_size, config, width=64):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mmreplk.ops import _triton_tc_depthwise as tc
    tiles, num_warps, num_stages = config
    signature = {name: 'i32' for name in SIZES}
    constants = dict(K=kernel_size, PRECISION=precision, UPCAST=False,
                     ALIGN=8 if width % 8 == 0 else 1, **tiles)
    if kernel_name == 'banded_wgrad':
        pointers = dict(x_ptr=f'*{dtype}', dy_ptr=f'*{dtype}', part_ptr='*fp32')
        signature['NUM_SPLITS'] = 'i32'
        constants.update(zip(('BLOCK_W', 'SPAN'), tc.wgrad_tile(kernel_size, width)))
    else:
        pointers = dict(x_ptr=f'*{dtype}', w_ptr=f'*{dtype}', b_ptr=f'*{dtype}',
                        y_ptr=f'*{dtype}')
        constants['HAS_BIAS'] = True
        if kernel_name == 'toeplitz_fwd':
            constants.setdefault('BLOCK_M', 64)
    fn = tc._KERNELS[kernel_name]
    signature = {**pointers, **signature}
    for name in fn.arg_names:
        if name in constants:
            signature[name] = 'constexpr'
    signature = {name: signature[name] for name in fn.arg_names}
    # As at a launch on 16-byte aligned tensors (PyTorch allocates them so).
    aligned = {(index, ): [['tt.divisibility', 16]] for index, name in enumerate(fn.arg_names)
               if name in pointers}
    compiled = triton.compile(ASTSource(fn, signature, constants, aligned),
                              target=GPUTarget(*H100),
                              options=dict(num_warps=num_warps, num_stages=num_stages))
    assert compiled.asm['cubin'], 'no cubin produced'
    return compiled.asm['ptx']


def _check_units(ptx, precision, dtype):
    fma = len(re.findall(r'\bfma\.rn\.f32\b', ptx))
    mma = len(re.findall(r'\b(?:wgmma|mma)\.', ptx))
    if dtype == 'fp32' and precision == 'ieee':
        assert fma > 0 and mma == 0, f'fp32 ieee dot must use FMAs, found {fma} fma / {mma} mma'
        assert 'tf32' not in ptx, 'fp32 ieee dot must not round to TF32'
    else:
        assert mma > 0, f'{dtype} {precision} dot must use tensor cores, found no mma'
        if dtype == 'fp32':
            assert 'tf32' in ptx, 'the tensor-core fp32 dot must be a TF32 one'


def _first_config(kernel_name):
    from mmreplk.ops._triton_tc_depthwise import AUTOTUNE_CONFIGS
    return AUTOTUNE_CONFIGS[kernel_name][0]


@pytest.mark.parametrize('kernel_name, dtype, precision', [
    ('banded_fwd', 'fp32', 'ieee'), ('banded_fwd', 'fp32', 'tf32'),
    ('toeplitz_fwd', 'bf16', 'ieee'), ('banded_wgrad', 'fp32', 'tf32')])
def test_tc_kernel_compiles_for_h100(kernel_name, dtype, precision):
    ptx = _compile(kernel_name, dtype, precision, 31, _first_config(kernel_name))
    _check_units(ptx, precision, dtype)


def _all_configs():
    from mmreplk.ops._triton_tc_depthwise import AUTOTUNE_CONFIGS
    return [(name, config) for name, configs in AUTOTUNE_CONFIGS.items() for config in configs]


@pytest.mark.slow
@pytest.mark.parametrize('dtype, precision', MODES)
@pytest.mark.parametrize('kernel_size, width', [(13, 57), (31, 64), (31, 16)])
def test_every_tc_autotune_config_compiles_for_h100(dtype, precision, kernel_size, width):
    for kernel_name, config in _all_configs():
        _check_units(_compile(kernel_name, dtype, precision, kernel_size, config, width),
                     precision, dtype)

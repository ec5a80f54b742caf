"""The Triton kernels compile for an H100 (sm_90) on any machine, GPU or not.

Triton ships ptxas, so the whole pipeline down to a cubin runs without a device. The PTX shows
which units the dots use: fp32 must stay on CUDA-core FMAs (no TF32 rounding), fp16/bf16 must
reach the tensor cores.
"""
import re

import pytest

from mmreplk.ops import triton_available

pytestmark = pytest.mark.skipif(not triton_available(),
                                reason='triton is not installed (pip install triton)')

H100 = ('cuda', 90, 32)


def _compile(kernel_name, dtype, kernel_size, shape):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mmreplk.ops import _triton_depthwise as kernels
    block_h, block_w, num_warps, num_stages = shape
    if kernel_name == 'fwd':
        fn = kernels._dwconv_fwd_kernel
        signature = dict(x_ptr=f'*{dtype}', w_ptr=f'*{dtype}', b_ptr=f'*{dtype}', y_ptr=f'*{dtype}',
                         N='i32', C='i32', H='i32', W='i32', N_BUCKET='i32', H_BUCKET='i32',
                         W_BUCKET='i32', K='constexpr', HAS_BIAS='constexpr',
                         UPCAST='constexpr', BLOCK_H='constexpr', BLOCK_W='constexpr')
        constants = dict(K=kernel_size, HAS_BIAS=True, UPCAST=False, BLOCK_H=block_h,
                         BLOCK_W=block_w)
    else:
        fn = kernels._dwconv_wgrad_kernel
        signature = dict(x_ptr=f'*{dtype}', dy_ptr=f'*{dtype}', part_ptr='*fp32', N='i32', C='i32',
                         H='i32', W='i32', NUM_SPLITS='i32', N_BUCKET='i32', H_BUCKET='i32',
                         W_BUCKET='i32', K='constexpr', UPCAST='constexpr',
                         BLOCK_H='constexpr', BLOCK_W='constexpr', SPAN='constexpr')
        constants = dict(K=kernel_size, UPCAST=False, BLOCK_H=block_h, BLOCK_W=block_w,
                         SPAN=kernels._span(dict(BLOCK_W=block_w, K=kernel_size)))
    compiled = triton.compile(ASTSource(fn, signature, constants), target=GPUTarget(*H100),
                              options=dict(num_warps=num_warps, num_stages=num_stages))
    assert compiled.asm['cubin'], 'no cubin produced'
    return compiled.asm['ptx']


def _check_units(ptx, dtype):
    fma = len(re.findall(r'\bfma\.rn\.f32\b', ptx))
    mma = len(re.findall(r'\b(?:w?gmma|mma)\.', ptx))
    if dtype == 'fp32':
        assert fma > 0 and mma == 0, f'fp32 dot must use FMAs, found {fma} fma / {mma} mma'
        assert 'tf32' not in ptx
    else:
        assert mma > 0, f'{dtype} dot must use tensor cores, found no mma'


@pytest.mark.parametrize('kernel_name, dtype', [('fwd', 'fp32'), ('wgrad', 'fp32'),
                                                 ('fwd', 'bf16')])
def test_triton_kernel_compiles_for_h100(kernel_name, dtype):
    _check_units(_compile(kernel_name, dtype, 31, (64, 16, 4, 2)), dtype)


def _all_configs():
    from mmreplk.ops._triton_depthwise import _FWD_SHAPES, _WGRAD_SHAPES
    return [(name, shape) for name, shapes in (('fwd', _FWD_SHAPES), ('wgrad', _WGRAD_SHAPES))
            for shape in shapes]


@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['fp32', 'fp16', 'bf16'])
@pytest.mark.parametrize('kernel_size', [7, 31])
def test_every_autotune_config_compiles_for_h100(dtype, kernel_size):
    for kernel_name, shape in _all_configs():
        _check_units(_compile(kernel_name, dtype, kernel_size, shape), dtype)

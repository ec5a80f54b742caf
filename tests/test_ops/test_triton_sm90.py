"""mmreplk's Triton kernels compile for an H100 (sm_90) on any machine, GPU or not.

Every autotune candidate, in every precision the launchers pass, compiles down to a cubin with
Triton's own ptxas (see sm90.py); ptxas's report holds no register spill; the PTX shows the
units the docs state: fp32 with PyTorch's TF32 switch off ('ieee') on CUDA-core FMAs with no
TF32 anywhere, and every tensor-core candidate (TF32, fp16, bf16) of the tensor-core kernels on
Hopper's ``wgmma``, never ``mma.sync``.
"""
import pytest

from mmreplk.ops import triton_available

from .sm90 import compile_sm90

pytestmark = pytest.mark.skipif(not triton_available(),
                                reason='triton is not installed (pip install triton)')

# (operand dtype, dot precision): the three precision rules (fp32 with TF32 off / on, half).
MODES = [('fp32', 'ieee'), ('fp32', 'tf32'), ('fp16', 'ieee'), ('bf16', 'ieee')]
# (K, W, N): aligned and unaligned widths, narrow and wide maps, small and full batches.
SIZES = [(31, 64, 4), (31, 127, 64), (13, 57, 16), (31, 16, 2)]
TENSOR_CORE_KERNELS = ('banded', 'toeplitz', 'weight_grad')
TORCH_DTYPES = dict(fp32='float32', fp16='float16', bf16='bfloat16')


def _jit_function(kernel):
    from triton.runtime.jit import JITFunction
    fn = kernel.fn
    while not isinstance(fn, JITFunction):  # through triton.heuristics
        fn = fn.fn
    return fn


def _kernel(module_name):
    """The module's kernels: (name, Kernel)."""
    import importlib
    module = importlib.import_module(f'mmreplk.ops.triton.{module_name}')
    return [(f'{module_name}.{_jit_function(kernel).fn.__name__}', kernel)
            for kernel in module.KERNELS]


def _constants(module_name, kernel, tiles, precision, kernel_size, width, batch):
    """Every constexpr of a launch, as the module's launcher sets them."""
    from mmreplk.ops.precision import width_alignment
    from mmreplk.ops.triton import banded_ieee, toeplitz, weight_grad
    fn = _jit_function(kernel)
    constants = dict(K=kernel_size, PRECISION=precision, UPCAST=False,
                     ALIGN=width_alignment(width), **tiles)
    if 'HAS_BIAS' in fn.arg_names:
        constants['HAS_BIAS'] = True
    if module_name == 'banded_ieee':
        constants['PRECISION'] = 'ieee'
        if 'SPAN' in fn.arg_names and tiles:
            constants['SPAN'] = banded_ieee.span(constants)
    elif module_name == 'toeplitz':
        constants.setdefault('BLOCK_IMAGES', toeplitz.image_block(batch))
    elif module_name == 'weight_grad':
        constants.update(zip(('BLOCK_W', 'SPAN'), weight_grad.tile(kernel_size, width)))
    return fn, constants


def _tuned_candidates(module_name, kernel, constants, dtype):
    """The candidates the autotuner tunes for a launch (after the kernel's pruning)."""
    import torch
    return kernel.tuned_candidates(getattr(torch, TORCH_DTYPES[dtype]), constants)


def _compile_all(module_name, dtype, precision, kernel_size, width, batch):
    """Every tuned candidate of the module's kernels: (what, Compiled)."""
    results = []
    for name, kernel in _kernel(module_name):
        _, probe = _constants(module_name, kernel, {}, precision, kernel_size, width, batch)
        for tiles, warps, stages in _tuned_candidates(module_name, kernel, probe, dtype):
            fn, constants = _constants(module_name, kernel, tiles, precision, kernel_size, width,
                                       batch)
            what = f'{name} {tiles} warps={warps} stages={stages} {dtype}/{precision}'
            results.append((what, compile_sm90(fn, dtype, constants, warps, stages)))
    return results


def _check(module_name, dtype, precision, results):
    for what, compiled in results:
        assert compiled.spill_bytes == 0, f'{what}: ptxas spilled {compiled.spill_bytes} bytes'
        counts = compiled.counts()
        if dtype == 'fp32' and (precision == 'ieee' or module_name == 'banded_ieee'):
            assert counts['fma'] > 0 and counts['mma'] == counts['wgmma'] == 0, (what, counts)
            assert 'tf32' not in compiled.ptx, f'{what}: an fp32-accurate dot rounds to TF32'
        elif module_name == 'banded_ieee':
            assert counts['mma'] + counts['wgmma'] > 0, (what, counts)
        else:
            # The docs' claim: every tensor-core candidate runs on wgmma.
            assert counts['wgmma'] > 0 and counts['mma'] == 0, (what, counts)
            if dtype == 'fp32':
                assert 'tf32' in compiled.ptx, f'{what}: the fp32 tensor-core dot is no TF32 one'


@pytest.mark.parametrize('module_name, dtype, precision', [
    ('banded_ieee', 'fp32', 'ieee'), ('banded_ieee', 'bf16', 'ieee'),
    ('banded', 'fp32', 'ieee'), ('banded', 'fp32', 'tf32'), ('toeplitz', 'bf16', 'ieee'),
    ('weight_grad', 'fp32', 'tf32')])
def test_kernels_compile_for_h100(module_name, dtype, precision):
    """The first candidate of each kernel at K = 31 on a wide unaligned map (the spill-prone
    case) and a small batch."""
    from mmreplk.ops.triton import weight_grad
    results = []
    for name, kernel in _kernel(module_name):
        _, probe = _constants(module_name, kernel, {}, precision, 31, 127, 2)
        tiles, warps, stages = _tuned_candidates(module_name, kernel, probe, dtype)[0]
        fn, constants = _constants(module_name, kernel, tiles, precision, 31, 127, 2)
        results.append((f'{name} {tiles}', compile_sm90(fn, dtype, constants, warps, stages)))
    assert weight_grad.WGMMA_ROWS == 64
    _check(module_name, dtype, precision, results)


@pytest.mark.slow
@pytest.mark.parametrize('dtype, precision', MODES)
@pytest.mark.parametrize('kernel_size, width, batch', SIZES)
def test_every_tensor_core_candidate_compiles_unspilled_on_its_unit(dtype, precision,
                                                                     kernel_size, width, batch):
    for module_name in TENSOR_CORE_KERNELS:
        _check(module_name, dtype, precision,
               _compile_all(module_name, dtype, precision, kernel_size, width, batch))


@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['fp32', 'fp16', 'bf16'])
@pytest.mark.parametrize('kernel_size, width', [(7, 64), (31, 127)])
def test_every_first_kernel_candidate_compiles_for_h100(dtype, kernel_size, width):
    _check('banded_ieee', dtype, 'ieee',
           _compile_all('banded_ieee', dtype, 'ieee', kernel_size, width, 16))

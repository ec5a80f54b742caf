"""The tensor-core kernel families' Python side on any machine, and the kernels on a CUDA device.

The interpreter tests (test_triton_tc_interpreter.py) check the kernels' arithmetic on CPU; the
CUDA tests here run the autotuned kernels themselves and are skipped without a GPU.
"""
import pytest
import torch

from mmreplk.ops import triton_available

from .tc_reference import errors, reference
from .tolerances import DTYPES, TOLERANCES

pytestmark = pytest.mark.skipif(not triton_available(),
                                reason='triton is not installed (pip install triton)')
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@pytest.fixture
def tc():
    from mmreplk.ops import _triton_tc_depthwise
    return _triton_tc_depthwise


@pytest.fixture
def allow_tf32():
    saved = torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32 = saved


def test_families_interface(tc):
    assert [family.name for family in tc.FAMILIES] == ['triton_banded', 'triton_toeplitz']
    banded, toeplitz = tc.FAMILIES
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert banded.supports((64, 384, 128, 128), 31, dtype)
        assert toeplitz.supports((64, 384, 32, 32), 31, dtype)
    assert not toeplitz.supports((64, 384, 33, 32), 31, torch.float32), 'T would not be small'
    assert not banded.supports((2, 3, 8, 8), 30, torch.float32), 'even kernel'
    assert not banded.supports((2, 3, 8, 8), 31, torch.float64)
    assert not banded.supports((0, 3, 8, 8), 31, torch.float32)
    assert not banded.supports((1, 70000, 8, 8), 31, torch.float32), 'grid limit on channels'


def test_dot_precision_follows_allow_tf32_at_call_time(tc, allow_tf32):
    torch.backends.cudnn.allow_tf32 = True
    assert tc.dot_precision(torch.float32) == 'tf32'
    torch.backends.cudnn.allow_tf32 = False
    assert tc.dot_precision(torch.float32) == 'ieee'
    # fp16/bf16 run on tensor cores whatever the switch says; 'ieee' only names no TF32 rounding.
    assert tc.dot_precision(torch.bfloat16) == tc.dot_precision(torch.float16) == 'ieee'


@pytest.mark.parametrize('kernel_size, width, tile', [(31, 64, (32, 64)), (31, 16, (16, 16)),
                                                      (13, 64, (16, 32)), (7, 5, (16, 16)),
                                                      (31, 24, (32, 32))])
def test_wgrad_tile_covers_the_band_or_the_row(tc, kernel_size, width, tile):
    block_w, span = tc.wgrad_tile(kernel_size, width)
    assert (block_w, span) == tile
    assert span >= min(width, block_w + kernel_size - 1)


def test_autotuning_is_keyed_on_size_buckets(tc, monkeypatch):
    """Sizes of one power-of-two bucket reach the autotuner with one key (no new tuning)."""
    launches = []

    class Recorder:
        def __init__(self, kernel):
            self.arg_names = kernel.arg_names

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launches.append({**dict(zip(self.arg_names, args)), **kwargs})
            return launch

    key_names = ['N_BUCKET', 'H_BUCKET', 'W_BUCKET', 'K', 'PRECISION', 'ALIGN']
    for name, tuned in tc._TUNED.items():
        assert list(tuned.keys) == key_names, name
        assert 2 <= len(tuned.configs) <= 4, f'{name}: keep the candidate list short'
        monkeypatch.setitem(tc._TUNED, name, Recorder(tc._KERNELS[name]))
    monkeypatch.setattr(tc, 'interpreting', lambda: False)
    monkeypatch.setattr(tc, '_check_device', lambda x: None)
    weight = torch.randn(3, 1, 13, 13)
    for shape in [(5, 3, 17, 30), (7, 3, 31, 19)]:
        x = torch.randn(shape)
        for family in tc.FAMILIES:
            family.forward(x, weight, None)
            family.input_grad(x, weight)
        tc.banded_weight_grad(x, x, 13)
    assert len(launches) == 2 * 5
    keys = {tuple(launch[key] for key in key_names) for launch in launches}
    assert keys == {(8, 32, 32, 13, tc.dot_precision(torch.float32), 1)}


def test_cpu_tensor_without_interpreter_is_refused(tc):
    x = torch.randn(1, 2, 8, 8)
    weight = torch.randn(2, 1, 7, 7)
    for family in tc.FAMILIES:
        with pytest.raises(RuntimeError, match='needs a CUDA tensor'):
            family.forward(x, weight, None)


# (N, C, H, W, K): the dense-Toeplitz regime (K >= 2R - 1), its largest map, a wide odd one.
# Two kernel sizes only: every (kernel, K, dtype, precision, bias) compiles every candidate.
CUDA_SHAPES = [(4, 8, 16, 16, 31), (2, 16, 32, 32, 31), (1, 8, 57, 70, 13)]
CUDA_MODES = ['fp32', 'tf32', 'fp16', 'bf16']


@cuda
@pytest.mark.parametrize('mode', CUDA_MODES)
@pytest.mark.parametrize('shape', CUDA_SHAPES, ids=lambda shape: 'x'.join(map(str, shape)))
def test_tc_families_match_conv2d_on_cuda(tc, allow_tf32, shape, mode):
    torch.backends.cudnn.allow_tf32 = mode == 'tf32'
    dtype = DTYPES['fp32' if mode == 'tf32' else mode]
    n, c, h, w, k = shape
    generator = torch.Generator().manual_seed(0)
    x, grad_out = (torch.randn(n, c, h, w, generator=generator) for _ in range(2))
    weight = torch.randn(c, 1, k, k, generator=generator)
    bias = torch.randn(c, generator=generator)
    x, grad_out, weight, bias = (t.to('cuda', dtype) for t in (x, grad_out, weight, bias))
    ref = reference(x.cpu(), weight.cpu(), grad_out.cpu())
    ref['out'] += bias.cpu().double().view(1, c, 1, 1)
    magnitude = reference(x.cpu().abs(), weight.cpu().abs(), grad_out.cpu().abs())
    for family in tc.FAMILIES:
        if not family.supports((n, c, h, w), k, dtype):
            continue
        outputs = dict(out=family.forward(x, weight, bias),
                       grad_x=family.input_grad(grad_out, weight),
                       grad_w=family.weight_grad(x, grad_out, k))
        assert outputs['grad_w'].dtype == torch.float32
        assert torch.equal(outputs['grad_w'], family.weight_grad(x, grad_out, k)), (
            f'{family.name}: the weight gradient is not reproducible')
        for name, value in outputs.items():
            error = errors(value, ref[name], magnitude[name])
            if mode == 'tf32':
                assert error['tf32_bound'] <= 1, (family.name, name, error)
            else:
                assert error['relative'] <= TOLERANCES[mode], (family.name, name, error)

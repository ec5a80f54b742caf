"""The tensor-core backends' Python side on any machine, and their kernels on a CUDA device.

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


TC_BACKENDS = ('triton_banded', 'triton_toeplitz')


def _backend(name):
    from mmreplk.ops import DWCONV_BACKENDS
    return DWCONV_BACKENDS.get(name)()


@pytest.fixture
def allow_tf32():
    saved = torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32 = saved


def test_backends_declare_what_they_cover():
    banded, toeplitz = (_backend(name) for name in TC_BACKENDS)
    cuda = torch.device('cuda')

    def covers(backend, shape, kernel_size, dtype):
        return backend.unsupported('forward', cuda, dtype, kernel_size, shape) is None

    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert covers(banded, (64, 384, 128, 128), 31, dtype)
        assert covers(toeplitz, (64, 384, 32, 32), 31, dtype)
    assert not covers(toeplitz, (64, 384, 33, 32), 31, torch.float32), 'T would not be small'
    assert not covers(banded, (2, 3, 8, 8), 30, torch.float32), 'even kernel'
    assert not covers(banded, (2, 3, 8, 8), 31, torch.float64)
    assert not covers(banded, (0, 3, 8, 8), 31, torch.float32)
    assert not covers(banded, (1, 70000, 8, 8), 31, torch.float32), 'grid limit on channels'
    from mmreplk.ops.triton import toeplitz as toeplitz_module
    assert toeplitz_module.TOEPLITZ_MAX_PIXELS == 32 * 32


def test_dot_precision_follows_allow_tf32_at_call_time(allow_tf32):
    from mmreplk.ops.triton.launch import dot_precision
    torch.backends.cudnn.allow_tf32 = True
    assert dot_precision(torch.float32) == 'tf32'
    torch.backends.cudnn.allow_tf32 = False
    assert dot_precision(torch.float32) == 'ieee'
    # fp16/bf16 run on tensor cores whatever the switch says; 'ieee' only names no TF32 rounding.
    assert dot_precision(torch.bfloat16) == dot_precision(torch.float16) == 'ieee'


@pytest.mark.parametrize('kernel_size, width, tile', [(31, 64, (32, 64)), (31, 16, (16, 16)),
                                                      (13, 64, (16, 32)), (7, 5, (16, 16)),
                                                      (31, 24, (32, 32))])
def test_wgrad_tile_covers_the_band_or_the_row(kernel_size, width, tile):
    from mmreplk.ops.triton.weight_grad import tile as wgrad_tile
    block_w, span = wgrad_tile(kernel_size, width)
    assert (block_w, span) == tile
    assert span >= min(width, block_w + kernel_size - 1)


@pytest.mark.parametrize('kernel_size', [3, 7, 13, 19, 27, 29, 31, 33])
@pytest.mark.parametrize('width', [8, 16, 24, 40, 64, 96, 128, 256])
def test_wgrad_slices_start_aligned_and_cover_the_band(kernel_size, width):
    """Where W % 8 == 0 every tile's first input column is a multiple of 8 (16-byte loads) and
    its SPAN columns still reach the last column its band reads (the kernel's ``base``)."""
    from mmreplk.ops.triton.weight_grad import tile as wgrad_tile
    block_w, span = wgrad_tile(kernel_size, width)
    pad = kernel_size // 2
    for w0 in range(0, width, block_w):
        base = max(0, min(max(0, w0 - pad) // 8 * 8, width - span))
        assert base % 8 == 0
        assert base <= max(0, w0 - pad)
        assert base + span >= min(width, w0 + block_w + pad), (w0, base, span)


def test_autotuning_is_keyed_on_size_buckets(monkeypatch):
    """Sizes of one power-of-two bucket reach the autotuner with one key (no new tuning), and
    every kernel launches through the one launch helper."""
    from mmreplk.ops.triton import banded, launch, toeplitz, weight_grad
    launches = []

    class Recorder:
        def __init__(self, kernel):
            self.arg_names = kernel.fn.arg_names

        def __getitem__(self, grid):
            def run(*args, **kwargs):
                launches.append({**dict(zip(self.arg_names, args)), **kwargs})
            return run

    kernels = (banded.FORWARD, toeplitz.FORWARD, weight_grad.WEIGHT_GRAD)
    for kernel in kernels:
        assert list(kernel.tuned.keys) == launch.TUNING_KEY
        assert 2 <= len(kernel.tuned.configs) <= 4, 'keep the candidate list short'
        monkeypatch.setattr(kernel, 'tuned', Recorder(kernel))
    monkeypatch.setattr(launch, 'interpreting', lambda: False)
    monkeypatch.setattr(launch, 'check_device', lambda tensor: None)
    weight = torch.randn(3, 1, 13, 13)
    for shape in [(5, 3, 17, 30), (7, 3, 31, 19)]:
        x = torch.randn(shape)
        for name in TC_BACKENDS:
            _backend(name).forward(x, weight, None)
            _backend(name).input_grad(x, weight)
        _backend('triton_banded').weight_grad(x, x, 13)
    assert len(launches) == 2 * 5
    keys = {tuple(launch_args[key] for key in launch.TUNING_KEY) for launch_args in launches}
    assert keys == {(8, 32, 32, 13, launch.dot_precision(torch.float32), 1)}


def test_autotuners_cache_on_disk_and_prune_per_launch():
    """A second process re-tunes nothing (Triton's on-disk autotune cache, where this Triton has
    one), and the candidates a launch tunes follow its precision and tile."""
    import inspect

    import triton

    from mmreplk.ops.triton import banded, banded_ieee, toeplitz, weight_grad
    kernels = (banded.FORWARD, toeplitz.FORWARD, weight_grad.WEIGHT_GRAD) + banded_ieee.KERNELS
    if 'cache_results' in inspect.signature(triton.autotune).parameters:
        assert all(kernel.tuned.cache_results for kernel in kernels)
    x = {'x_ptr': torch.empty(1, 1, 1, 1)}
    configs = banded.FORWARD.tuned.configs
    on_fmas = banded.FORWARD._prune(configs, x, PRECISION='ieee')
    assert [config.kwargs for config in on_fmas] == [
        tiles for tiles, _, _ in banded.FORWARD.candidates if tiles != banded.TENSOR_CORE_ONLY]
    assert banded.FORWARD._prune(configs, x, PRECISION='tf32') == configs
    bf16 = {'x_ptr': torch.empty(1, 1, 1, 1, dtype=torch.bfloat16)}
    assert banded.FORWARD._prune(configs, bf16, PRECISION='ieee') == configs
    configs = weight_grad.WEIGHT_GRAD.tuned.configs
    for span, groups in ((16, [4]), (32, [4, 2]), (64, [1, 4, 2])):
        kept = weight_grad.WEIGHT_GRAD._prune(configs, x, PRECISION='tf32', SPAN=span)
        assert [config.kwargs['GROUP'] for config in kept] == groups, span


def test_cpu_tensor_without_interpreter_is_refused():
    x = torch.randn(1, 2, 8, 8)
    weight = torch.randn(2, 1, 7, 7)
    for name in TC_BACKENDS:
        with pytest.raises(RuntimeError, match='needs a CUDA tensor'):
            _backend(name).forward(x, weight, None)


# (N, C, H, W, K): the dense-Toeplitz regime (K >= 2R - 1), its largest map, a wide odd one.
# Two kernel sizes only: every (kernel, K, dtype, precision, bias) compiles every candidate.
CUDA_SHAPES = [(4, 8, 16, 16, 31), (2, 16, 32, 32, 31), (1, 8, 57, 70, 13)]
CUDA_MODES = ['fp32', 'tf32', 'fp16', 'bf16']


@cuda
@pytest.mark.parametrize('mode', CUDA_MODES)
@pytest.mark.parametrize('shape', CUDA_SHAPES, ids=lambda shape: 'x'.join(map(str, shape)))
def test_tc_families_match_conv2d_on_cuda(allow_tf32, shape, mode):
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
    for backend in map(_backend, TC_BACKENDS):
        if backend.unsupported('forward', x.device, dtype, k, (n, c, h, w)):
            continue
        outputs = dict(out=backend.forward(x, weight, bias),
                       grad_x=backend.input_grad(grad_out, weight),
                       grad_w=backend.weight_grad(x, grad_out, k))
        assert outputs['grad_w'].dtype == torch.float32
        assert torch.equal(outputs['grad_w'], backend.weight_grad(x, grad_out, k)), (
            f'{backend.name}: the weight gradient is not reproducible')
        for name, value in outputs.items():
            error = errors(value, ref[name], magnitude[name])
            if mode == 'tf32':
                assert error['tf32_bound'] <= 1, (backend.name, name, error)
            else:
                assert error['relative'] <= TOLERANCES[mode], (backend.name, name, error)

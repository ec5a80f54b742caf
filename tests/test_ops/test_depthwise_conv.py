"""mmreplk.ops.depthwise_conv2d: every path equals F.conv2d(groups=C) in value and gradients."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmreplk.ops import (DepthwiseConv2d, DepthwiseDispatcher, build_depthwise_conv,
                         depthwise_conv2d, implementations, set_depthwise_impl, triton_available)
from mmreplk.ops.backends import TritonBandedIEEEBackend

from .tolerances import DTYPES, TOLERANCES, tolerance

KERNEL_SIZES = (3, 5, 13, 27, 31)
# (N, C, H, W): odd sizes, batch 1 and > 1, maps smaller than the kernel.
SHAPES = ((1, 4, 11, 9), (3, 5, 15, 13))
CPU_IMPLS = ('nchw', 'channels_last', 'cpu', 'auto')
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _relative_error(actual, expected):
    return ((actual.double() - expected).abs().max() / expected.abs().max()).item()


def _check_against_conv2d(impl, shape, kernel_size, dtype_name, device='cpu', bias=True):
    dtype = DTYPES[dtype_name]
    n, c, h, w = shape
    x = torch.randn(n, c, h, w, dtype=dtype, device=device)
    weight = torch.randn(c, 1, kernel_size, kernel_size, dtype=dtype, device=device)
    b = torch.randn(c, dtype=dtype, device=device) if bias else None
    grad_out = torch.randn(n, c, h, w, dtype=dtype, device=device)

    ref_leaves = [t.double().requires_grad_() for t in (x, weight) + ((b, ) if bias else ())]
    ref = F.conv2d(ref_leaves[0], ref_leaves[1], ref_leaves[2] if bias else None,
                   padding=kernel_size // 2, groups=c)
    ref.backward(grad_out.double())

    leaves = [t.clone().requires_grad_() for t in (x, weight) + ((b, ) if bias else ())]
    out = depthwise_conv2d(leaves[0], leaves[1], leaves[2] if bias else None, impl=impl)
    out.backward(grad_out)

    assert out.shape == ref.shape and out.dtype == dtype
    bound = tolerance(impl, dtype_name, torch.device(device).type)
    for name, actual, expected in zip(('out', 'grad_x', 'grad_w', 'grad_b'),
                                      [out] + [t.grad for t in leaves],
                                      [ref] + [t.grad for t in ref_leaves]):
        assert actual.dtype == dtype, name
        error = _relative_error(actual, expected)
        assert error <= bound, f'{name}: relative error {error:.2e} > {bound:.0e}'
    # DDP expects every gradient laid out like its parameter (else it copies, and warns).
    for name, leaf in zip(('x', 'weight', 'bias'), leaves):
        assert leaf.grad.stride() == leaf.stride(), f'grad of {name} has strides unlike {name}'


@pytest.mark.parametrize('dtype_name', sorted(TOLERANCES))
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s)))
@pytest.mark.parametrize('kernel_size', KERNEL_SIZES)
@pytest.mark.parametrize('impl', CPU_IMPLS)
def test_cpu_paths_match_conv2d(impl, kernel_size, shape, dtype_name):
    _check_against_conv2d(impl, shape, kernel_size, dtype_name, bias=shape[0] > 1)


# 'auto' at every K; each Triton kernel forced at three (every K compiles its own kernels).
CUDA_CASES = [('auto', k) for k in KERNEL_SIZES] + [
    (impl, k) for impl in implementations() if impl.startswith('triton') for k in (3, 13, 31)]


@cuda_only
@pytest.mark.parametrize('dtype_name', sorted(TOLERANCES))
@pytest.mark.parametrize('impl, kernel_size', CUDA_CASES)
def test_cuda_paths_match_conv2d(monkeypatch, impl, kernel_size, dtype_name):
    if impl.startswith('triton') and not triton_available():
        pytest.skip('triton is not installed')
    # fp32-accurate paths only: with TF32 on, auto may pick a TF32 tensor-core kernel, whose
    # bound test_triton_tc_depthwise.py checks.
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    for shape in SHAPES + ((2, 8, 67, 45), ):
        _check_against_conv2d(impl, shape, kernel_size, dtype_name, device='cuda')


@pytest.mark.parametrize('dtype', sorted(DTYPES.values(), key=str))
def test_auto_never_runs_triton_on_cpu(monkeypatch, dtype):
    def fail(*args):
        raise AssertionError('the Triton path ran for a CPU tensor')

    for pass_name in ('forward', 'input_grad', 'weight_grad'):
        monkeypatch.setattr(TritonBandedIEEEBackend, pass_name, fail)
    x = torch.randn(1, 2, 9, 9, dtype=dtype, requires_grad=True)
    weight = torch.randn(2, 1, 31, 31, dtype=dtype, requires_grad=True)
    depthwise_conv2d(x, weight).sum().backward()
    assert x.grad.shape == x.shape and weight.grad.shape == weight.shape
    candidates, _ = DepthwiseDispatcher().candidates('forward', torch.device('cpu'), dtype, 31,
                                                     (1, 2, 9, 9))
    assert 'triton' not in candidates


@pytest.mark.skipif(not triton_available(), reason='triton is not installed')
@pytest.mark.parametrize('pass_name', ['forward', 'input_grad', 'weight_grad'])
def test_auto_does_not_measure_the_first_triton_kernel_on_cuda(pass_name):
    """Measured 5x slower than nchw at every Table-1 cell on an H100: auto skips it, with the
    figure, while the tensor-core kernels stay candidates; forcing it by name still resolves."""
    dispatcher = DepthwiseDispatcher()
    cuda = torch.device('cuda')
    candidates, skipped = dispatcher.candidates(pass_name, cuda, torch.float32, 31,
                                                (8, 64, 32, 32))
    assert 'triton' not in candidates and '5x slower than nchw' in skipped['triton']
    assert 'triton_banded' in candidates and 'nchw' in candidates
    assert dispatcher.resolve(pass_name, 'triton', cuda, torch.float32, 31,
                              (8, 64, 32, 32)) == 'triton'


def test_explicit_triton_on_cpu_explains_itself():
    x, weight = torch.randn(1, 2, 9, 9), torch.randn(2, 1, 7, 7)
    message = 'CUDA tensor' if triton_available() else 'needs the triton package'
    with pytest.raises(RuntimeError, match=message):
        depthwise_conv2d(x, weight, impl='triton')


@pytest.mark.parametrize('impl', ['auto', 'nchw', 'channels_last', 'cpu'])
def test_output_and_gradients_take_the_input_layout(impl):
    """Whatever layout a path computes in, results come back laid out like their inputs (a
    custom op's output strides are fixed before it runs)."""
    weight = torch.randn(3, 1, 7, 7, requires_grad=True)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 3, 9, 9).contiguous(memory_format=layout).requires_grad_()
        out = depthwise_conv2d(x, weight, impl=impl)
        assert out.is_contiguous(memory_format=layout)
        out.backward(torch.randn(2, 3, 9, 9).contiguous(memory_format=layout))
        assert x.grad.is_contiguous(memory_format=layout)
        assert weight.grad.stride() == weight.stride()
        weight.grad = None


@pytest.mark.parametrize('weight_shape, input_shape, match', [
    ((3, 1, 4, 4), (1, 3, 8, 8), 'odd K'),
    ((3, 1, 5, 3), (1, 3, 8, 8), 'odd K'),
    ((3, 2, 5, 5), (1, 6, 8, 8), 'odd K'),
    ((3, 1, 5, 5), (1, 4, 8, 8), r'input \(N, 3, H, W\)'),
])
def test_rejects_unsupported_shapes(weight_shape, input_shape, match):
    with pytest.raises(ValueError, match=match):
        depthwise_conv2d(torch.randn(input_shape), torch.randn(weight_shape))


def test_rejects_unknown_impl():
    with pytest.raises(ValueError, match='unknown depth-wise conv impl'):
        depthwise_conv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3), impl='cutlass')
    with pytest.raises(ValueError, match='unknown depth-wise conv impl'):
        DepthwiseConv2d(2, 3, impl='cutlass')
    with pytest.raises(ValueError, match='odd'):
        DepthwiseConv2d(2, 4)


@pytest.mark.parametrize('bias', [False, True])
def test_state_dict_interchangeable_with_conv2d(bias):
    ours = DepthwiseConv2d(6, 13, bias=bias)
    plain = nn.Conv2d(6, 6, 13, padding=6, groups=6, bias=bias)
    expected_keys = {'weight', 'bias'} if bias else {'weight'}
    assert set(ours.state_dict()) == set(plain.state_dict()) == expected_keys
    x = torch.randn(2, 6, 15, 15)
    plain.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-5, atol=1e-5)
    fresh = nn.Conv2d(6, 6, 13, padding=6, groups=6, bias=bias)
    ours.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(ours(x), fresh(x), rtol=1e-5, atol=1e-5)


def test_factory_and_impl_switch():
    model = nn.Sequential(build_depthwise_conv(4, 31), nn.ReLU(),
                          build_depthwise_conv(4, 5, bias=True))
    convs = [m for m in model if isinstance(m, DepthwiseConv2d)]
    assert [m.impl for m in convs] == ['auto', 'auto']
    assert convs[1].bias is not None and convs[0].bias is None
    x = torch.randn(1, 4, 17, 17)
    expected = model(x)
    for impl in implementations():
        if impl.startswith('triton'):
            continue
        assert set_depthwise_impl(model, impl) is model
        assert [m.impl for m in convs] == [impl, impl]
        assert f'impl={impl}' in repr(convs[0])
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='unknown depth-wise conv impl'):
        set_depthwise_impl(model, 'fast')


@pytest.mark.parametrize('as_conv', [True, False])
@pytest.mark.parametrize('shape, kernel_size', [((2, 3, 9, 13), 7), ((1, 2, 17, 15), 31)])
def test_cpu_weight_grad_strategies(monkeypatch, as_conv, shape, kernel_size):
    """Both ways the CPU path computes the weight gradient equal autograd's in float64."""
    from mmreplk.ops import _cpu_depthwise
    monkeypatch.setattr(_cpu_depthwise, 'WGRAD_AS_CONV_MIN_WORK', 0 if as_conv else float('inf'))
    x, grad_out = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    weight = torch.randn(shape[1], 1, kernel_size, kernel_size, dtype=torch.float64,
                         requires_grad=True)
    F.conv2d(x, weight, padding=kernel_size // 2, groups=shape[1]).backward(grad_out)
    torch.testing.assert_close(_cpu_depthwise.weight_grad(x, grad_out, kernel_size), weight.grad)


@pytest.mark.parametrize('grad', [True, False])
def test_traced_graph_has_only_standard_ops(grad):
    """ONNX export traces the model: the auto path must record aten convs, no Python function."""
    conv = DepthwiseConv2d(4, 31, bias=True).requires_grad_(grad)
    x = torch.randn(1, 4, 17, 17)
    traced = torch.jit.trace(conv, x)
    kinds = {node.kind() for node in traced.graph.nodes()}
    assert 'prim::PythonOp' not in kinds
    assert any('conv' in kind for kind in kinds)
    torch.testing.assert_close(traced(x), conv(x))

"""The op is a registered PyTorch custom op: opcheck passes and torch.compile keeps it."""
import pytest
import torch

from mmreplk.models import RepLKNet
from mmreplk.ops import DepthwiseConv2d, DepthwiseDispatcher, use_dispatcher
from mmreplk.ops.backends import CPUBackend

from helpers import TINY_ARCH, assert_close_relative

OPS = ('depthwise_conv2d', 'depthwise_conv2d_input_grad', 'depthwise_conv2d_weight_grad')


def _op_args(op, impl, layout, bias):
    x = torch.randn(2, 3, 9, 11).contiguous(memory_format=layout)
    weight = torch.randn(3, 1, 7, 7)
    grad_out = torch.randn(2, 3, 9, 11).contiguous(memory_format=layout)
    if op == 'depthwise_conv2d':
        return (x.requires_grad_(), weight.requires_grad_(),
                torch.randn(3).requires_grad_() if bias else None, impl)
    if op == 'depthwise_conv2d_input_grad':
        return grad_out, weight, impl
    return x, grad_out, weight, impl


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last],
                         ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('impl', ['auto', 'nchw', 'cpu'])
@pytest.mark.parametrize('op', OPS)
def test_opcheck(op, impl, layout, bias):
    if op != 'depthwise_conv2d' and not bias:
        pytest.skip('the gradient ops take no bias')
    torch.library.opcheck(getattr(torch.ops.mmreplk, op).default,
                          _op_args(op, impl, layout, bias))


class CountingCPUBackend(CPUBackend):
    """Our CPU path under the name 'cpu', counting the forward passes it runs."""

    def __init__(self):
        self.calls = 0

    def forward(self, x, weight, bias):
        self.calls += 1
        return super().forward(x, weight, bias)

    def input_grad(self, grad_out, weight):
        # The input gradient runs the forward on the flipped kernel: a pass, not a forward pass.
        calls = self.calls
        grad = super().input_grad(grad_out, weight)
        self.calls = calls
        return grad


def test_compiled_backbone_equals_eager_and_keeps_our_op():
    torch.manual_seed(0)
    # float64: Inductor reorders the BN arithmetic, and in fp32 the rounding of a 64 x 48 stem
    # gradient (2e-3 relative) would hide a small error in ours.
    model = RepLKNet(arch=TINY_ARCH, drop_path_rate=0.0).double().train()
    image = torch.randn(2, 3, 64, 48, dtype=torch.float64)

    def run(module):
        model.zero_grad()
        x = image.clone().requires_grad_()
        outs = module(x)
        sum(out.square().mean() for out in outs).backward()
        return outs, x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}

    counting = CountingCPUBackend()
    convs = sum(isinstance(module, DepthwiseConv2d) for module in model.modules())
    with use_dispatcher(DepthwiseDispatcher([counting])):
        eager = run(model)
        assert counting.calls == convs
        compiled = run(torch.compile(model))
    # Every depth-wise conv of the compiled graph still ran through our op.
    assert counting.calls == 2 * convs
    for eager_out, compiled_out in zip(eager[0], compiled[0]):
        assert_close_relative(compiled_out, eager_out, rel=1e-9)
    assert_close_relative(compiled[1], eager[1], rel=1e-9)
    # Gradients that are zero in exact arithmetic (a conv bias before a BN) are rounding noise:
    # compare against the largest gradient.
    scale = max(grad.abs().max().item() for grad in eager[2].values())
    for grad_name, grad in eager[2].items():
        torch.testing.assert_close(compiled[2][grad_name], grad, rtol=1e-9, atol=1e-12 * scale,
                                   msg=lambda text: f'{grad_name}: {text}')

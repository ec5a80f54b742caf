import copy

import pytest
import torch
from helpers import assert_close_relative, randomize_bn_stats

from mmreplk.models.layers import (ConvBN, ConvFFN, RepLKBlock, ReparamLargeKernelConv,
                                   fuse_bn_pointwise_conv, fuse_conv_bn)


def test_fuse_conv_bn_matches_sequential():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=True)
    bn = torch.nn.BatchNorm2d(6)
    randomize_bn_stats(bn)
    bn.eval()
    x = torch.randn(2, 4, 9, 9)
    weight, bias = fuse_conv_bn(conv.weight, conv.bias, bn)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, weight, bias, padding=1), bn(conv(x)))


def test_fuse_preceding_bn_matches_sequential():
    bn = torch.nn.BatchNorm2d(5)
    randomize_bn_stats(bn)
    bn.eval()
    conv = torch.nn.Conv2d(5, 7, 1, bias=False)
    x = torch.randn(2, 5, 6, 6)
    weight, bias = fuse_bn_pointwise_conv(bn, conv.weight, None)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, weight, bias), conv(bn(x)))
    with pytest.raises(ValueError, match='1x1'):
        fuse_bn_pointwise_conv(bn, torch.randn(7, 5, 3, 3), None)


def test_group_norm_cannot_be_folded():
    brick = ConvBN(4, 4, 1, norm_cfg=dict(type='GN', num_groups=2))
    with pytest.raises(TypeError, match='BatchNorm'):
        brick.reparameterize()


@pytest.mark.parametrize('small_kernel', [5, 3, None])
@pytest.mark.parametrize('kernel_size', [13, 7])
def test_large_kernel_conv_folds_exactly(kernel_size, small_kernel):
    brick = ReparamLargeKernelConv(6, kernel_size, small_kernel)
    randomize_bn_stats(brick)
    brick.eval()
    x = torch.randn(2, 6, 11, 17)
    expected = brick(x)
    kernel, bias = brick.get_equivalent_kernel_bias()
    assert kernel.shape == (6, 1, kernel_size, kernel_size)
    brick.reparameterize()
    assert brick.deploy and not hasattr(brick, 'lkb_origin') and not hasattr(brick, 'small_conv')
    assert set(brick.state_dict()) == {'lkb_reparam.weight', 'lkb_reparam.bias'}
    assert_close_relative(brick(x), expected)
    brick.reparameterize()  # idempotent
    assert_close_relative(brick(x), expected)


def test_fold_keeps_dtype_and_same_padding():
    brick = ReparamLargeKernelConv(3, 9, 5).double()
    randomize_bn_stats(brick)
    brick.eval()
    x = torch.randn(1, 3, 5, 4, dtype=torch.float64)
    expected = brick(x)
    brick.reparameterize()
    out = brick(x)
    assert out.dtype == torch.float64 and out.shape == x.shape
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize('block_fn', [
    lambda: RepLKBlock(8, 12, 11, 5),
    lambda: RepLKBlock(8, 8, 9, None),
    lambda: ConvFFN(8, 32),
])
def test_blocks_fold_every_bn(block_fn):
    block = block_fn()
    randomize_bn_stats(block)
    block.eval()
    x = torch.randn(2, 8, 10, 13)
    expected = block(x)
    deployed = copy.deepcopy(block)
    deployed.reparameterize()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    assert_close_relative(deployed(x), expected)


def test_small_kernel_larger_than_large_kernel_is_rejected():
    with pytest.raises(ValueError, match='small_kernel'):
        ReparamLargeKernelConv(4, 5, 7)
    with pytest.raises(ValueError, match='odd'):
        ReparamLargeKernelConv(4, 8, 3)


@pytest.mark.parametrize('deploy', [False, True])
@pytest.mark.parametrize('brick_fn', [
    lambda impl, deploy: ConvBN(6, 6, 7, groups=6, deploy=deploy, dwconv_impl=impl),
    lambda impl, deploy: ReparamLargeKernelConv(6, 13, 5, deploy=deploy, dwconv_impl=impl),
    lambda impl, deploy: RepLKBlock(4, 6, 13, 5, deploy=deploy, dwconv_impl=impl),
], ids=['ConvBN', 'ReparamLargeKernelConv', 'RepLKBlock'])
def test_dwconv_impl_travels_through_the_constructors(brick_fn, deploy):
    """Like norm_cfg, every brick hands the impl down to its depth-wise convs at build time."""
    from mmreplk.ops import DepthwiseConv2d
    brick = brick_fn('cpu', deploy)
    convs = [m for m in brick.modules() if isinstance(m, DepthwiseConv2d)]
    assert convs and {conv.impl for conv in convs} == {'cpu'}
    assert {m.impl for m in brick_fn('auto', deploy).modules()
            if isinstance(m, DepthwiseConv2d)} == {'auto'}
    if not deploy and not isinstance(brick, ConvBN):
        brick.reparameterize()
        assert {m.impl for m in brick.modules() if isinstance(m, DepthwiseConv2d)} == {'cpu'}

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_relative
from mmengine.registry import MODELS, init_default_scope
from torch import nn
from unireplknet_reference import authors_keys, randomize

from mmreplk.models import UniRepLKNet, reparameterize
from mmreplk.models.backbones.unireplknet_keys import (infer_unireplknet_arch,
                                                       load_unireplknet_weights)
from mmreplk.models.layers import DilatedReparamBlock, UniRepLKNetBlock, dilate_kernel
from mmreplk.ops import DepthwiseConv2d
from mmreplk.utils import CheckpointMismatchError

TINY = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32], kernel_sizes=[[3], [13], [13, 3], [7]])

# Parameters in millions measured on the authors' model, 1000-class classifier
# (/work/shared/UNIREPLKNET.md): training form, folded form; the README counts the folded one.
CLASSIFIER_PARAMS = {
    'A': (4.65, 4.44), 'F': (6.49, 6.24), 'P': (11.08, 10.74), 'N': (18.82, 18.32),
    'T': (31.69, 31.04), 'S': (56.46, 55.65), 'B': (99.09, 98.01), 'L': (220.08, 218.45),
    'XL': (388.69, 386.53)}
README_PARAMS = {'A': 4.4, 'F': 6.2, 'P': 10.7, 'N': 18.3, 'T': 31, 'S': 56, 'B': 98, 'L': 218,
                 'XL': 386}


def meta_model(arch, **kwargs):
    with torch.device('meta'):
        return UniRepLKNet(arch, **kwargs)


def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('arch', list(CLASSIFIER_PARAMS))
@pytest.mark.parametrize('deploy', [False, True])
def test_parameter_counts_match_the_authors(arch, deploy):
    model = meta_model(arch, deploy=deploy)
    dims = model.dims
    # The classifier swaps the four output LayerNorms for one LayerNorm and a 1000-class head.
    classifier = num_params(model) - 2 * sum(dims) + 2 * dims[-1] + (dims[-1] + 1) * 1000
    assert round(classifier / 1e6, 2) == CLASSIFIER_PARAMS[arch][deploy]
    if deploy:
        # The README gives the folded count to its last digit (XL's 386.53M reads 386M).
        readme = README_PARAMS[arch]
        assert abs(classifier / 1e6 - readme) <= (0.1 if isinstance(readme, float) else 1)


@pytest.mark.parametrize('arch,params', [('T', (31.05, 30.40)), ('S', (55.69, 54.88))])
def test_downstream_parameter_counts(arch, params):
    counts = [round(num_params(meta_model(arch, deploy=deploy)) / 1e6, 2)
              for deploy in (False, True)]
    assert counts == list(params)


@pytest.mark.parametrize('arch', ['T', 'S'])
@pytest.mark.parametrize('deploy', [False, True])
def test_state_dict_names_are_the_authors(arch, deploy):
    model = meta_model(arch, deploy=deploy)
    setting = UniRepLKNet.arch_settings[arch]
    expected = authors_keys(setting['depths'], setting['kernel_sizes'], deploy)
    assert sorted(model.state_dict()) == sorted(expected)


def test_multi_scale_outputs_and_out_indices():
    model = UniRepLKNet(TINY).eval()
    outs = model(torch.rand(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 24, 4, 6),
                                              (2, 32, 2, 3)]
    partial = UniRepLKNet(TINY, out_indices=(1, -1))
    assert partial.out_indices == (1, 3)
    assert sorted({k.split('.')[0] for k in partial.state_dict() if k.startswith('norm')}) == [
        'norm1', 'norm3']
    assert [o.shape[1] for o in partial.eval()(torch.rand(1, 3, 64, 64))] == [16, 32]
    with pytest.raises(IndexError):
        UniRepLKNet(TINY, out_indices=4)


def test_outputs_are_normalized_by_their_output_norm():
    model = UniRepLKNet(TINY).eval()
    with torch.no_grad():
        model.norm2.weight.fill_(2.)
        model.norm2.bias.fill_(3.)
        out = model(torch.rand(1, 3, 64, 64))[2]
    # A channels-first LayerNorm: every pixel's channels have mean 3 and std 2 afterwards.
    torch.testing.assert_close(out.mean(1), torch.full_like(out.mean(1), 3.), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.var(1, unbiased=False), torch.full_like(out[:, 0], 4.),
                               atol=1e-2, rtol=1e-2)


def test_registered_for_both_scopes():
    for scope in ('mmseg', 'mmdet'):
        init_default_scope(scope)
        model = MODELS.build(dict(type='UniRepLKNet', arch=TINY))
        assert isinstance(model, UniRepLKNet)


@pytest.mark.parametrize('bad,match', [
    (dict(depths=[1], dims=[8]), 'missing'),
    (dict(TINY, ffn=4), 'unknown'),
    (dict(TINY, kernel_sizes=[[3], [13], [13], [7]]), 'one kernel size per block'),
    (dict(TINY, kernel_sizes=[[3], [19], [13, 3], [7]]), 'unsupported'),
    (dict(TINY, dims=[8, 16, 24]), 'one entry per stage'),
])
def test_custom_arch_errors_name_the_problem(bad, match):
    with pytest.raises((KeyError, ValueError), match=match):
        UniRepLKNet(bad)


def test_unknown_arch_name():
    with pytest.raises(KeyError, match='unknown UniRepLKNet arch'):
        UniRepLKNet('Z')


def test_large_kernels_run_through_the_op_and_dilated_branches_through_pytorch():
    model = UniRepLKNet(TINY, dwconv_impl='nchw')
    block = model.stages[1][0].dwconv
    assert isinstance(block.lk_origin, DepthwiseConv2d) and block.lk_origin.impl == 'nchw'
    assert isinstance(model.stages[0][0].dwconv, DepthwiseConv2d)
    assert isinstance(block.dil_conv_k5_1, DepthwiseConv2d) and block.dil_conv_k5_1.impl == 'nchw'
    dilated = block.dil_conv_k3_5
    assert type(dilated) is nn.Conv2d and dilated.dilation == (5, 5)
    reparameterize(model)
    convs = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    assert len(convs) == 5 and all(conv.impl == 'nchw' for conv in convs)


@pytest.mark.parametrize('kernel,dilation', [(3, 2), (3, 5), (5, 2), (7, 2), (9, 2)])
def test_dilate_kernel_equals_the_dilated_conv(kernel, dilation):
    weight = torch.randn(4, 1, kernel, kernel, dtype=torch.float64)
    x = torch.randn(2, 4, 23, 23, dtype=torch.float64)
    pad = dilation * (kernel - 1) // 2
    expected = F.conv2d(x, weight, padding=pad, dilation=dilation, groups=4)
    torch.testing.assert_close(F.conv2d(x, dilate_kernel(weight, dilation), padding=pad,
                                        groups=4), expected)


@pytest.mark.parametrize('kernel', [3, 5, 7, 9, 11, 13, 15, 17])
@pytest.mark.parametrize('layer_scale', [1e-6, None])
def test_block_folds_to_an_equal_block(kernel, layer_scale):
    block = randomize(UniRepLKNetBlock(8, kernel, layer_scale_init_value=layer_scale).double())
    x = torch.randn(2, 8, 19, 21, dtype=torch.float64)
    block.eval()
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        folded = block(x)
    assert block.deploy and block.gamma is None and block.act[1].beta is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    torch.testing.assert_close(folded, expected, rtol=1e-10, atol=1e-10)
    deployed = UniRepLKNetBlock(8, kernel, layer_scale_init_value=layer_scale, deploy=True)
    deployed.double().load_state_dict(block.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(deployed.eval()(x), expected, rtol=1e-10, atol=1e-10)


def test_dilated_block_folds_alone_and_twice():
    block = randomize(DilatedReparamBlock(6, 13).double()).eval()
    x = torch.randn(1, 6, 17, 17, dtype=torch.float64)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        block.reparameterize()
        torch.testing.assert_close(block(x), expected)
    assert sorted(block.state_dict()) == ['lk_origin.bias', 'lk_origin.weight']


def test_backbone_folds_to_the_deploy_structure():
    model = randomize(UniRepLKNet(TINY, drop_path_rate=0.2).double()).eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        folded = model(x)
        reparameterize(model)
        again = model(x)
    assert model.deploy
    for out, ref, rerun in zip(folded, expected, again):
        assert_close_relative(out, ref, rel=1e-10)
        torch.testing.assert_close(rerun, out)
    deployed = UniRepLKNet(TINY, deploy=True).double()
    deployed.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        for out, ref in zip(deployed.eval()(x), expected):
            assert_close_relative(out, ref, rel=1e-10)


def test_fold_keeps_float32_close():
    model = randomize(UniRepLKNet(TINY)).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        reparameterize(model)
        for out, ref in zip(model(x), expected):
            assert_close_relative(out, ref)


def test_drop_path_rates_grow_linearly():
    model = UniRepLKNet(TINY, drop_path_rate=0.3)
    blocks = [block for stage in model.stages for block in stage]
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in blocks]
    assert rates == pytest.approx([0., 0.075, 0.15, 0.225, 0.3])


def test_with_cp_gives_the_same_values_and_gradients():
    torch.manual_seed(1)
    plain = UniRepLKNet(TINY)
    ckpt = copy.deepcopy(plain)
    ckpt.with_cp = True
    for module in ckpt.modules():
        if isinstance(module, UniRepLKNetBlock):
            module.with_cp = True
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    grads = []
    for model in (plain, ckpt):
        loss = sum(o.square().sum() for o in model.train()(x))
        loss.backward()
        grads.append(model.stages[2][0].pwconv1[1].weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])
    assert UniRepLKNet(TINY, with_cp=True).stages[0][0].with_cp


def test_frozen_stages_and_norm_eval():
    model = UniRepLKNet(TINY, frozen_stages=1, norm_eval=False)
    assert model.train() is model
    frozen = [model.downsample_layers[0], model.stages[0], model.norm0]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())
    assert not model.stages[0][0].norm.training and model.stages[1][0].norm.training
    evaluated = UniRepLKNet(TINY, norm_eval=True).train()
    assert not any(m.training for m in evaluated.modules() if isinstance(m, nn.BatchNorm2d))
    assert evaluated.stages[1][0].training


def test_norm_cfg_reaches_every_bn():
    model = UniRepLKNet(TINY, use_sync_bn=True)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, nn.SyncBatchNorm) for m in bns)
    same = UniRepLKNet(TINY, norm_cfg=dict(type='SyncBN'))
    assert isinstance(same.stages[1][0].dwconv.origin_bn, nn.SyncBatchNorm)
    with pytest.raises(ValueError, match='contradicts'):
        UniRepLKNet(TINY, use_sync_bn=True, norm_cfg=dict(type='BN'))
    with pytest.raises(ValueError, match='needs BatchNorm'):
        UniRepLKNet(TINY, deploy=True, norm_cfg=dict(type='GN', num_groups=4))


# -- the authors' checkpoints --------------------------------------------------------------


def imagenet_file(path, model, num_classes=10):
    """The authors' ImageNet layout: {'model': ...}, final LayerNorm norm.*, classifier head.*,
    no per-output norms."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith('norm')}
    width = model.dims[-1]
    state.update({'norm.weight': torch.ones(width), 'norm.bias': torch.zeros(width),
                  'head.weight': torch.randn(num_classes, width),
                  'head.bias': torch.zeros(num_classes)})
    torch.save({'model': state}, path)
    return path


def test_imagenet_file_loads_through_init_cfg_with_the_head_dropped(tmp_path):
    source = randomize(UniRepLKNet(TINY))
    path = imagenet_file(tmp_path / 'unireplknet_tiny_in1k_224.pth', source)
    model = UniRepLKNet(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    state = model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith('norm'):
            torch.testing.assert_close(state[key], value, msg=key)
    report = load_unireplknet_weights(UniRepLKNet(TINY), path)
    assert sorted(report.dropped) == ['head.bias', 'head.weight', 'norm.bias', 'norm.weight']
    assert sorted(report.missing) == sorted(f'norm{i}.{p}' for i in range(4)
                                            for p in ('weight', 'bias'))


def test_downstream_checkpoint_backbone_loads_completely(tmp_path):
    source = randomize(UniRepLKNet(TINY))
    state = {'backbone.' + k: v for k, v in source.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(3, 8, 1, 1)
    torch.save({'meta': {'CLASSES': ('a', 'b', 'c')}, 'state_dict': state}, tmp_path / 'seg.pth')
    model = UniRepLKNet(TINY)
    report = load_unireplknet_weights(model, tmp_path / 'seg.pth')
    assert report.missing == [] and report.dropped == ['decode_head.conv_seg.weight']
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for out, ref in zip(model.eval()(x), source.eval()(x)):
            torch.testing.assert_close(out, ref)


def test_every_authors_key_is_required(tmp_path):
    source = UniRepLKNet(TINY)
    state = source.state_dict()
    del state['stages.1.0.dwconv.dil_bn_k3_4.running_var']
    torch.save(state, tmp_path / 'incomplete.pth')
    with pytest.raises(CheckpointMismatchError, match='dil_bn_k3_4.running_var'):
        load_unireplknet_weights(UniRepLKNet(TINY), tmp_path / 'incomplete.pth')


def test_a_wrong_arch_is_named(tmp_path):
    other = dict(TINY, dims=[16, 32, 48, 64])
    torch.save(UniRepLKNet(other).state_dict(), tmp_path / 'other.pth')
    with pytest.raises(CheckpointMismatchError, match='looks like a training-form custom'):
        load_unireplknet_weights(UniRepLKNet(TINY), tmp_path / 'other.pth')


def test_a_folded_file_in_a_training_model_is_named(tmp_path):
    torch.save(reparameterize(UniRepLKNet(TINY)).state_dict(), tmp_path / 'folded.pth')
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        load_unireplknet_weights(UniRepLKNet(TINY), tmp_path / 'folded.pth')
    report = load_unireplknet_weights(UniRepLKNet(TINY, deploy=True), tmp_path / 'folded.pth')
    assert not report.missing


@pytest.mark.parametrize('deploy', [False, True])
def test_structure_is_read_off_the_shapes(deploy):
    model = UniRepLKNet(TINY, in_channels=4, out_indices=(0, 2), deploy=deploy)
    arch, extra = infer_unireplknet_arch(model.state_dict())
    assert arch == dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32),
                        kernel_sizes=((3, ), (13, ), (13, 3), (7, )))
    assert extra == dict(in_channels=4, deploy=deploy, layer_scale_init_value=1e-6,
                         out_indices=(0, 2))


def test_default_init_is_the_authors_truncated_normal():
    model = UniRepLKNet(dict(TINY, dims=[64, 128, 192, 256]))
    model.init_weights()
    linear = model.stages[2][0].pwconv1[1]
    large = model.stages[1][0].dwconv.lk_origin
    for layer in (linear, large):
        assert abs(layer.weight.std().item() - 0.02) < 0.002
    assert not linear.bias.any()

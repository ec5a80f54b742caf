import copy

import pytest
import torch
from helpers import TINY_ARCH, assert_close_relative, randomize_bn_stats

from mmreplk.models import RepLKNet, reparameterize

BN_KEYS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


def official_keys(layers, small_kernel=True, stage_norms=False):
    """State-dict names of the authors' backbone, written from SPEC section 1 alone."""
    def conv_bn(prefix):
        return [f'{prefix}.conv.weight'] + [f'{prefix}.bn.{k}' for k in BN_KEYS]

    keys = []
    for i in range(4):
        keys += conv_bn(f'stem.{i}')
    for s, n in enumerate(layers):
        for b in range(n):
            lk = f'stages.{s}.blocks.{2 * b}'
            keys += [f'{lk}.prelkb_bn.{k}' for k in BN_KEYS]
            keys += conv_bn(f'{lk}.pw1') + conv_bn(f'{lk}.pw2')
            keys += conv_bn(f'{lk}.large_kernel.lkb_origin')
            if small_kernel:
                keys += conv_bn(f'{lk}.large_kernel.small_conv')
            ffn = f'stages.{s}.blocks.{2 * b + 1}'
            keys += [f'{ffn}.preffn_bn.{k}' for k in BN_KEYS]
            keys += conv_bn(f'{ffn}.pw1') + conv_bn(f'{ffn}.pw2')
        if stage_norms:
            keys += [f'stages.{s}.norm.{k}' for k in BN_KEYS]
        if s < len(layers) - 1:
            keys += conv_bn(f'transitions.{s}.0') + conv_bn(f'transitions.{s}.1')
    return keys


def expected_sizes(h, w):
    def down(n):
        return (n - 1) // 2 + 1
    h, w = down(down(h)), down(down(w))
    sizes = [(h, w)]
    for _ in range(3):
        h, w = down(h), down(w)
        sizes.append((h, w))
    return sizes


def trainable_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('arch,params,stage_norms', [
    ('31B', 78_837_120, False),
    ('31L', 171_130_944, False),
    ('XL', 333_390_336, True),
])
def test_official_names_and_parameter_counts(arch, params, stage_norms):
    model = RepLKNet(arch=arch, norm_intermediate_features=stage_norms)
    assert trainable_params(model) == params
    expected = official_keys([2, 2, 18, 2], small_kernel=arch != 'XL', stage_norms=stage_norms)
    assert sorted(model.state_dict()) == sorted(expected)  # load_state_dict ignores order


@pytest.mark.parametrize('arch', ['31B', '31L', 'XL'])
def test_full_arch_shapes_and_reparam(arch):
    model = RepLKNet(arch=arch, drop_path_rate=0.)
    randomize_bn_stats(model)
    model.eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        outs = model(x)
        assert [o.shape[1] for o in outs] == model.channels
        assert [tuple(o.shape[2:]) for o in outs] == expected_sizes(97, 131)
        model.switch_to_deploy()
        folded = model(x)
    assert model.deploy
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for out, ref in zip(folded, outs):
        assert_close_relative(out, ref)


@pytest.mark.parametrize('size', [(64, 64), (97, 131), (33, 40)])
def test_tiny_output_strides(size):
    model = RepLKNet(arch=TINY_ARCH).eval()
    outs = model(torch.randn(2, 3, *size))
    assert len(outs) == 4
    assert [tuple(o.shape) for o in outs] == [
        (2, c, h, w) for c, (h, w) in zip(TINY_ARCH['channels'], expected_sizes(*size))]
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize('out_indices,expected', [(3, (3,)), ((-1, 0), (0, 3)), ([1, 2], (1, 2))])
def test_out_indices(out_indices, expected):
    requested = copy.copy(out_indices)
    model = RepLKNet(arch=TINY_ARCH, out_indices=out_indices).eval()
    assert model.out_indices == expected
    assert out_indices == requested
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [TINY_ARCH['channels'][i] for i in expected]


def test_out_indices_out_of_range():
    with pytest.raises(IndexError, match='out of range'):
        RepLKNet(arch=TINY_ARCH, out_indices=(0, 4))


@pytest.mark.parametrize('arch,match', [
    ('31X', 'unknown RepLKNet arch'),
    ({**TINY_ARCH, 'large_kernel_sizes': [13, 12, 9, 7]}, 'odd'),
    ({**TINY_ARCH, 'channels': [8, 16, 24]}, 'one entry per stage'),
    ({k: v for k, v in TINY_ARCH.items() if k != 'layers'}, "missing \\['layers'\\]"),
    ({**TINY_ARCH, 'small_kernel': 15}, 'small_kernel'),
])
def test_bad_arch_is_named(arch, match):
    with pytest.raises((KeyError, ValueError), match=match):
        RepLKNet(arch=arch)


def test_norm_intermediate_features_adds_output_norms():
    plain = RepLKNet(arch=TINY_ARCH)
    normed = RepLKNet(arch=TINY_ARCH, norm_intermediate_features=True)
    assert not any('.norm.' in k for k in plain.state_dict())
    assert sum('.norm.running_mean' in k for k in normed.state_dict()) == 4
    normed.load_state_dict(plain.state_dict(), strict=False)
    for stage in normed.stages:
        stage.norm.running_mean.fill_(1.)
    normed.eval()
    plain.eval()
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(normed(x)[0], plain(x)[0])


def test_norm_cfg_reaches_every_norm_layer():
    model = RepLKNet(arch=TINY_ARCH, norm_cfg=dict(type='GN', num_groups=4),
                     norm_intermediate_features=True)
    norms = [m for m in model.modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d))]
    assert norms and all(isinstance(m, torch.nn.GroupNorm) for m in norms)
    model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='BatchNorm'):
        RepLKNet(arch=TINY_ARCH, norm_cfg=dict(type='GN', num_groups=4), deploy=True)


@pytest.mark.parametrize('deploy', [False, True])
def test_dwconv_impl_reaches_every_depthwise_conv(deploy):
    from mmreplk.ops import DepthwiseConv2d
    model = RepLKNet(arch=TINY_ARCH, dwconv_impl='channels_last', deploy=deploy)
    convs = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    # The 3x3 stem conv, and per block the large kernel (and its small kernel unless folded).
    assert len(convs) == 1 + sum(TINY_ARCH['layers']) * (1 if deploy else 2)
    assert {conv.impl for conv in convs} == {'channels_last'}
    assert model.dwconv_impl == 'channels_last'
    with pytest.raises(ValueError, match='unknown depth-wise conv impl'):
        RepLKNet(arch=TINY_ARCH, dwconv_impl='cutlass')


def test_folded_convs_keep_the_impl():
    model = RepLKNet(arch=TINY_ARCH, dwconv_impl='nchw').eval()
    reparameterize(model)
    convs = [m for m in model.modules() if type(m).__name__ == 'DepthwiseConv2d']
    assert convs and {conv.impl for conv in convs} == {'nchw'}


def test_sync_bn_from_config():
    model = RepLKNet(arch=TINY_ARCH, norm_cfg=dict(type='SyncBN'))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())


def test_drop_path_rates_grow_linearly():
    model = RepLKNet(arch=TINY_ARCH, drop_path_rate=0.4)
    rates = []
    for stage in model.stages:
        for lk_block, ffn in zip(stage.blocks[::2], stage.blocks[1::2]):
            pair = [getattr(b.drop_path, 'drop_prob', 0.) for b in (lk_block, ffn)]
            assert pair[0] == pair[1]
            rates.append(pair[0])
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.4, 5))


def test_with_cp_same_outputs_and_grads():
    ref = RepLKNet(arch=TINY_ARCH, drop_path_rate=0.)
    ckpt = RepLKNet(arch=TINY_ARCH, drop_path_rate=0., with_cp=True)
    ckpt.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outs_ref, outs_cp = ref(x), ckpt(x)
    for a, b in zip(outs_ref, outs_cp):
        torch.testing.assert_close(a, b)
    sum(o.square().mean() for o in outs_ref).backward()
    sum(o.square().mean() for o in outs_cp).backward()
    for (name, p_ref), p_cp in zip(ref.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p_cp.grad, p_ref.grad, msg=name)


def test_frozen_stages():
    model = RepLKNet(arch=TINY_ARCH, frozen_stages=2)
    assert model.train() is model
    frozen = [model.stem, model.stages[0], model.stages[1], model.transitions[0]]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in [model.transitions[1], model.stages[2], model.stages[3]]:
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in module.modules())
    stem_mean = model.stem[0].bn.running_mean.clone()
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
    torch.testing.assert_close(model.stem[0].bn.running_mean, stem_mean)
    assert model.stem[0].conv.weight.grad is None
    assert model.stages[2].blocks[0].pw1.conv.weight.grad is not None


def test_norm_eval_keeps_statistics():
    model = RepLKNet(arch=TINY_ARCH, norm_eval=True)
    assert model.train() is model
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not bn.training for bn in bns)
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(2, 3, 64, 64))
    for bn, mean in zip(bns, before):
        torch.testing.assert_close(bn.running_mean, mean)
    assert all(p.requires_grad for p in model.parameters())
    moving = RepLKNet(arch=TINY_ARCH).train()
    moving(torch.randn(2, 3, 64, 64))
    assert not torch.equal(moving.stem[0].bn.running_mean, torch.zeros(8))


def test_deploy_build_loads_folded_weights():
    model = RepLKNet(arch=TINY_ARCH)
    randomize_bn_stats(model)
    model.eval()
    reparameterize(model)
    deployed = RepLKNet(arch=TINY_ARCH, deploy=True).eval()
    deployed.load_state_dict(model.state_dict(), strict=True)
    assert any('lkb_reparam' in k for k in deployed.state_dict())
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(model(x), deployed(x)):
        torch.testing.assert_close(a, b)


def test_reparameterize_covers_root_and_is_idempotent():
    model = RepLKNet(arch=TINY_ARCH)
    randomize_bn_stats(model)
    model.eval()
    x = torch.randn(1, 3, 48, 48)
    expected = model(x)
    assert reparameterize(model) is model
    once = model(x)
    reparameterize(model)
    for a, b, c in zip(expected, once, model(x)):
        assert_close_relative(b, a)
        torch.testing.assert_close(c, b)
    brick = model.stages[0].blocks[0].large_kernel
    reparameterize(brick)  # the root module itself is folded (already folded here: no-op)
    assert brick.deploy


def test_registry_lookup_from_mmseg_and_mmdet_scopes():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (SEG_MODELS, DET_MODELS):
        model = registry.build(dict(type='RepLKNet', arch=TINY_ARCH, out_indices=(1, 3)))
        assert isinstance(model, RepLKNet) and model.out_indices == (1, 3)


def test_builds_on_meta_device():
    with torch.device('meta'):
        model = RepLKNet(arch='XL', norm_intermediate_features=True)
    assert sum(p.numel() for p in model.parameters()) == 333_390_336

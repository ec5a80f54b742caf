"""tools/convert_checkpoint.py: released / mmpretrain ImageNet files -> clean backbone files."""
import pytest
import torch
from helpers import TINY_ARCH, load_tool, randomize_bn_stats

from mmreplk.deployment import convert_checkpoint
from mmreplk.models import RepLKNet, infer_arch, load_backbone_weights, reparameterize


def official_file(path, model, num_classes=10):
    """The authors' layout: {'model': ...}, 'module.' prefix, classifier norm.* and head.*."""
    state = {'module.' + k: v.clone() for k, v in model.state_dict().items()}
    width = model.channels[-1]
    state.update({'module.norm.weight': torch.ones(width), 'module.norm.bias': torch.zeros(width),
                  'module.norm.running_mean': torch.zeros(width),
                  'module.norm.running_var': torch.ones(width),
                  'module.head.weight': torch.randn(num_classes, width),
                  'module.head.bias': torch.zeros(num_classes)})
    torch.save({'model': state, 'epoch': 300}, path)
    return path


@pytest.fixture
def source():
    model = RepLKNet(arch=TINY_ARCH)
    randomize_bn_stats(model)
    return model


def test_official_layout_converts_to_a_strictly_loadable_backbone(source, tmp_path):
    src = official_file(tmp_path / 'RepLKNet-tiny_ImageNet-1K_224.pth', source)
    report = convert_checkpoint(src, tmp_path / 'backbone.pth')

    assert report.arch == 'custom' and report.arch_setting == TINY_ARCH and not report.deploy
    assert sorted(report.dropped) == ['module.head.bias', 'module.head.weight',
                                      'module.norm.bias', 'module.norm.running_mean',
                                      'module.norm.running_var', 'module.norm.weight']
    assert report.missing == [] and report.num_tensors == len(source.state_dict())
    saved = torch.load(tmp_path / 'backbone.pth', weights_only=True)
    target = RepLKNet(arch=TINY_ARCH)
    target.load_state_dict(saved['state_dict'], strict=True)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, msg=key)
    assert 'dropped 6 keys' in report.summary()


def test_converted_file_loads_through_init_cfg(source, tmp_path):
    src = official_file(tmp_path / 'released.pth', source)
    dst = convert_checkpoint(src, tmp_path / 'backbone.pth').dst
    model = RepLKNet(arch=TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    report = load_backbone_weights(model, dst)
    assert not report.missing and not report.dropped
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for out, ref in zip(model.eval()(image), source.eval()(image)):
            torch.testing.assert_close(out, ref)


def test_mmpretrain_layout_keeps_its_stage_norms(tmp_path):
    source = RepLKNet(arch=TINY_ARCH, norm_intermediate_features=True)
    state = {'backbone.' + k: v for k, v in source.state_dict().items()}
    state.update({'head.fc.weight': torch.randn(10, 32), 'head.fc.bias': torch.zeros(10)})
    torch.save({'meta': {'epoch': 1}, 'state_dict': state}, tmp_path / 'mmpretrain.pth')
    report = convert_checkpoint(tmp_path / 'mmpretrain.pth', tmp_path / 'backbone.pth')
    assert report.norm_intermediate_features
    assert sorted(report.dropped) == ['head.fc.bias', 'head.fc.weight']
    assert report.num_tensors == len(source.state_dict())


@pytest.mark.parametrize('deploy', [False, True])
def test_structure_is_read_off_the_shapes(deploy):
    arch = dict(large_kernel_sizes=[15, 9], layers=[2, 1], channels=[8, 12], small_kernel=3,
                dw_ratio=1.5, ffn_ratio=3)
    model = RepLKNet(arch=arch, in_channels=4, out_indices=(0, 1))
    if deploy:
        reparameterize(model)
    found, extra = infer_arch(model.state_dict())
    assert found == dict(arch, small_kernel=None if deploy else 3)
    assert extra == dict(in_channels=4, deploy=deploy, norm_intermediate_features=False)


def test_safetensors_output(source, tmp_path):
    safetensors = pytest.importorskip('safetensors.torch', reason='safetensors is not installed')
    src = official_file(tmp_path / 'released.pth', source)
    report = convert_checkpoint(src, tmp_path / 'backbone.safetensors', safetensors=True)
    tensors = safetensors.load_file(str(report.dst))
    assert set(tensors) == set(source.state_dict())
    for key, value in source.state_dict().items():
        torch.testing.assert_close(tensors[key], value, msg=key)


def test_wrong_arch_is_named(source, tmp_path):
    src = official_file(tmp_path / 'released.pth', source)
    with pytest.raises(ValueError, match='does not fit this RepLKNet.*stem width 8'):
        convert_checkpoint(src, tmp_path / 'out.pth', arch='31B')


def test_cli(source, tmp_path, capsys):
    tool = load_tool('convert_checkpoint.py')
    src = official_file(tmp_path / 'released.pth', source)
    assert tool.main([str(src), str(tmp_path / 'backbone.pth')]) == 0
    assert 'dropped 6 keys' in capsys.readouterr().out
    torch.save({'epoch': 3}, tmp_path / 'junk.pth')
    with pytest.raises(SystemExit) as exit_status:
        tool.main([str(tmp_path / 'junk.pth'), str(tmp_path / 'out.pth')])
    assert exit_status.value.code == 1
    assert not (tmp_path / 'out.pth').exists()

"""RepLKNet's weights: released layouts map onto the backbone, a wrong arch or form is named."""
import pytest
import torch
from helpers import TINY_ARCH, randomize_bn_stats

from mmreplk.models import (RepLKNet, describe_arch, load_backbone_weights, match_state_dict,
                            to_backbone_state_dict)
from mmreplk.utils import CheckpointMismatchError, unwrap_state_dict


def released_file(tmp_path, model, wrapper='model', prefix='module.'):
    """A file laid out like the authors' ImageNet release: wrapped, prefixed, with a classifier."""
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    last = model.channels[-1]
    state.update({prefix + 'norm.weight': torch.ones(last), prefix + 'norm.bias': torch.zeros(last),
                  prefix + 'head.weight': torch.randn(10, last), prefix + 'head.bias': torch.zeros(10)})
    path = tmp_path / 'released.pth'
    torch.save({wrapper: state} if wrapper else state, path)
    return path


@pytest.mark.parametrize('wrapper,prefix', [('model', 'module.'), ('state_dict', ''), (None, '')])
def test_released_checkpoint_loads_through_init_cfg(tmp_path, wrapper, prefix):
    source = RepLKNet(arch=TINY_ARCH)
    randomize_bn_stats(source)
    path = released_file(tmp_path, source, wrapper, prefix)
    model = RepLKNet(arch=TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_official_layout_loads_strictly(tmp_path):
    source = RepLKNet(arch=TINY_ARCH)
    path = released_file(tmp_path, source)
    state, dropped = to_backbone_state_dict(unwrap_state_dict(torch.load(path)))
    assert sorted(dropped) == ['module.head.bias', 'module.head.weight', 'module.norm.bias',
                               'module.norm.weight']
    RepLKNet(arch=TINY_ARCH).load_state_dict(state, strict=True)


def test_mmpretrain_converted_file_reports_dropped_keys(tmp_path):
    source = RepLKNet(arch=TINY_ARCH, norm_intermediate_features=True)
    state = {'backbone.' + k: v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.randn(10, 32)
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': state}, path)
    model = RepLKNet(arch=TINY_ARCH)
    report = load_backbone_weights(model, path)
    assert 'head.fc.weight' in report.dropped
    assert sum('.norm.' in k for k in report.dropped) == 4 * 5
    assert not report.missing
    assert 'dropped 21 keys' in report.summary()


def test_missing_stage_norms_are_reported(tmp_path):
    path = released_file(tmp_path, RepLKNet(arch=TINY_ARCH))
    report = load_backbone_weights(RepLKNet(arch=TINY_ARCH, norm_intermediate_features=True), path)
    assert len(report.missing) == 4 * 5 and 'missing 20 keys' in report.summary()


def test_wrong_arch_is_named(tmp_path):
    path = released_file(tmp_path, RepLKNet(arch={**TINY_ARCH, 'channels': [16, 32, 48, 64]}))
    with pytest.raises(ValueError, match='does not fit this RepLKNet.*stem width 16'):
        load_backbone_weights(RepLKNet(arch=TINY_ARCH), path)


def test_deploy_form_mismatch_is_named(tmp_path):
    path = released_file(tmp_path, RepLKNet(arch=TINY_ARCH, deploy=True))
    with pytest.raises(ValueError, match='deploy=True'):
        load_backbone_weights(RepLKNet(arch=TINY_ARCH), path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / 'junk.pth'
    torch.save({'epoch': 3}, path)
    with pytest.raises(ValueError, match='no state dict found'):
        load_backbone_weights(RepLKNet(arch=TINY_ARCH), path)


def test_a_released_arch_is_named_by_its_table_entry():
    with torch.device('meta'):
        released = RepLKNet(arch='31B').state_dict()
        target = RepLKNet(arch='31L')
    assert describe_arch(released) == 'RepLKNet-31B'
    with pytest.raises(CheckpointMismatchError, match=r'does not fit this RepLKNet: the model has '
                       r'channels \[192, .*the file looks like RepLKNet-31B'):
        match_state_dict(target, released, 'b.pth')


def test_an_incomplete_or_foreign_file_is_described():
    state = RepLKNet(arch=TINY_ARCH).state_dict()
    assert describe_arch({'fc.weight': torch.zeros(1)}).startswith('not a RepLKNet checkpoint')
    del state['stages.1.blocks.0.pw2.conv.weight']
    assert describe_arch(state).startswith('a RepLKNet with stem width 8 (incomplete')

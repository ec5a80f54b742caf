"""tools/reparameterize.py and reparameterize_checkpoint: trained checkpoint -> deploy form."""
import pytest
import torch
from helpers import load_tool
from mmengine.config import Config

from mmreplk.deployment import reparameterize_checkpoint
from mmreplk.tasks import build_model, synthetic_image, task_adapter
from mmreplk.utils import read_state_dict
from .conftest import CLASSES, DET_CONFIG, SEG_CONFIG


@pytest.mark.parametrize('config,checkpoint', [(SEG_CONFIG, 'seg_checkpoint'),
                                               (DET_CONFIG, 'det_checkpoint')])
def test_folded_checkpoint_reproduces_the_trained_model(config, checkpoint, request, tmp_path):
    source = request.getfixturevalue(checkpoint)
    out = tmp_path / 'deploy.pth'
    result = reparameterize_checkpoint(config, source, out, verify_image=synthetic_image((96, 128)))

    assert result.max_abs_output > 0
    assert result.relative_diff <= 1e-4, result
    state, meta = read_state_dict(out)
    assert meta['dataset_meta']['classes'] == CLASSES and meta['reparameterized']
    assert any('lkb_reparam' in key for key in state)
    assert not any('lkb_origin' in key or 'small_conv' in key or 'prelkb_bn' in key
                   for key in state)
    assert result.num_tensors == len(state) < result.num_tensors_before


def test_folded_checkpoint_loads_into_config_with_deploy_true(seg_checkpoint, tmp_path):
    out = tmp_path / 'deploy.pth'
    reparameterize_checkpoint(SEG_CONFIG, seg_checkpoint, out)
    cfg = Config.fromfile(str(SEG_CONFIG))
    cfg.merge_from_dict({'model.backbone.deploy': True})
    deployed = build_model(cfg)
    deployed.load_state_dict(read_state_dict(out)[0], strict=True)
    trained = build_model(Config.fromfile(str(SEG_CONFIG)))
    trained.load_state_dict(read_state_dict(seg_checkpoint)[0], strict=True)

    task = task_adapter('mmseg')
    inputs, samples = task.prepare_batch(trained, synthetic_image((64, 80), seed=3))
    expected, = task.comparable_outputs(trained, inputs, samples)
    actual, = task.comparable_outputs(deployed, inputs, samples)
    assert actual.shape == (1, 5, 16, 20)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_refuses_a_checkpoint_that_is_already_folded(seg_checkpoint, tmp_path):
    out = tmp_path / 'deploy.pth'
    reparameterize_checkpoint(SEG_CONFIG, seg_checkpoint, out)
    with pytest.raises(ValueError, match='already re-parameterized.*deploy=True'):
        reparameterize_checkpoint(SEG_CONFIG, out, tmp_path / 'again.pth')


def test_checkpoint_of_another_config_is_named(det_checkpoint, tmp_path):
    with pytest.raises(ValueError, match='does not fit the model of the config.*missing keys'):
        reparameterize_checkpoint(SEG_CONFIG, det_checkpoint, tmp_path / 'x.pth')


def test_cli_verifies_and_reports(seg_checkpoint, tmp_path, capsys):
    tool = load_tool('reparameterize.py')
    out = tmp_path / 'deploy.pth'
    assert tool.main([str(SEG_CONFIG), str(seg_checkpoint), str(out), '--verify']) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and 'model.backbone.deploy=True' in printed
    relative = float(printed.split('relative ')[1].split()[0])
    assert relative <= 1e-4


def test_cli_exits_1_with_a_message_for_a_missing_checkpoint(tmp_path, caplog):
    tool = load_tool('reparameterize.py')
    with pytest.raises(SystemExit) as exit_status:
        tool.main([str(SEG_CONFIG), str(tmp_path / 'nope.pth'), str(tmp_path / 'o.pth')])
    assert exit_status.value.code == 1
    assert not (tmp_path / 'o.pth').exists()

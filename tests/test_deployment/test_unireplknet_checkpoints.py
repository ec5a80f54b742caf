"""The authors' UniRepLKNet files through our tools: ImageNet classifiers and mmseg 0.x / mmdet 2.x
checkpoints convert, load, fold, evaluate and infer without renaming a key."""
from pathlib import Path

import pytest
import torch
from helpers import load_tool
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from unireplknet_reference import authors_keys, randomize

from mmreplk.deployment import convert_checkpoint, reparameterize_checkpoint
from mmreplk.models import UniRepLKNet, reparameterize
from mmreplk.tasks import build_model, synthetic_image
from mmreplk.utils import CheckpointMismatchError, read_state_dict

CONFIGS = Path(__file__).parents[1] / 'data' / 'configs'
SEG_CONFIG = CONFIGS / 'tiny_upernet_unireplknet.py'
DET_CONFIG = CONFIGS / 'tiny_cascade_unireplknet.py'
SEG_ARCH = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32], kernel_sizes=[[3], [13], [17, 3], [7]])
CLASSES = ('sky', 'road', 'tree', 'car', 'person')


def legacy_downstream_file(config, path, ema=False):
    """A checkpoint laid out as the authors' mmseg 0.x / mmdet 2.x runs wrote it: ``meta`` with
    ``CLASSES`` (no ``dataset_meta``), the optimizer state, and the model's weights; with
    ``ema``, also the raw-weight ``ema_*`` buffers of mmdet 2.x's ExpMomentumEMAHook (their
    22K detectors use it)."""
    model = randomize(build_model(Config.fromfile(str(config))))
    state = model.state_dict()
    if ema:
        state.update({'ema_' + name.replace('.', '_'): torch.randn_like(param)
                      for name, param in model.named_parameters()})
    torch.save({'meta': {'CLASSES': CLASSES, 'mmcv_version': '1.7.1', 'iter': 160000,
                         'config': 'model = dict(...)'},
                'state_dict': state,
                'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-6, 'params': [0, 1]}]}},
               path)
    return path, model


def test_downstream_backbone_keys_are_the_authors(tmp_path):
    _, model = legacy_downstream_file(SEG_CONFIG, tmp_path / 'seg.pth')
    backbone = sorted(k[len('backbone.'):] for k in model.state_dict()
                      if k.startswith('backbone.'))
    assert backbone == sorted(authors_keys(SEG_ARCH['depths'], SEG_ARCH['kernel_sizes']))


@pytest.mark.parametrize('config,ema', [(SEG_CONFIG, False), (DET_CONFIG, True)])
def test_legacy_downstream_checkpoint_loads_exactly_and_through_mmengine(config, ema, tmp_path):
    path, source = legacy_downstream_file(config, tmp_path / 'legacy.pth', ema)
    cfg = Config.fromfile(str(config))
    # tools/infer.py and tools/reparameterize.py build the model this way ...
    model = build_model(cfg, path, strict='exact')
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    # ... and tools/test.py hands the file to mmengine's runner, which loads it like this.
    fresh = build_model(cfg)
    load_checkpoint(fresh, str(path), strict=not ema)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, msg=key)


def test_legacy_segmentation_checkpoint_evaluates_and_infers_with_the_tools(tmp_path):
    from mmreplk.datasets import generate_demo_dataset
    data = generate_demo_dataset(tmp_path / 'demo_ade', num_train=1, num_val=2, size=64, seed=1)
    config = tmp_path / 'demo_unireplknet.py'
    demo = Path(__file__).parents[2] / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
    config.write_text(
        f"_base_ = [{str(demo)!r}]\n"
        f"model = dict(backbone=dict(_delete_=True, type='UniRepLKNet', arch={SEG_ARCH!r}),\n"
        "             decode_head=dict(in_channels=[8, 16, 24, 32]),\n"
        "             auxiliary_head=dict(in_channels=24))\n")
    path, _ = legacy_downstream_file(config, tmp_path / 'iter_160000.pth')
    loader = [f'test_dataloader.dataset.data_root={data}', 'test_dataloader.num_workers=0']
    assert load_tool('test.py').main([str(config), str(path), '--work-dir', str(tmp_path / 'w'),
                                      '--cfg-options', *loader]) == 0
    out = tmp_path / 'pred'
    assert load_tool('infer.py').main([str(config), str(path),
                                       str(data / 'images' / 'validation'),
                                       '--out-dir', str(out)]) == 0
    assert len(list(out.glob('*_label.png'))) == 2


@pytest.mark.parametrize('config', [SEG_CONFIG, DET_CONFIG])
def test_reparameterize_checkpoint_folds_the_unireplknet(config, tmp_path):
    source, _ = legacy_downstream_file(config, tmp_path / 'trained.pth', ema=config == DET_CONFIG)
    out = tmp_path / 'deploy.pth'
    result = reparameterize_checkpoint(config, source, out,
                                       verify_image=synthetic_image((96, 128)))
    assert result.max_abs_output > 0 and result.relative_diff <= 1e-4, result
    state, _ = read_state_dict(out)
    assert any(k.endswith('pwconv2.0.bias') for k in state)
    assert not any(part in k for k in state
                   for part in ('dil_conv', 'origin_bn', 'pwconv2.2', 'ema_'))
    with pytest.raises(ValueError, match='already re-parameterized'):
        reparameterize_checkpoint(config, out, tmp_path / 'again.pth')


def imagenet_file(path, model, num_classes=10):
    """The authors' ImageNet layout: {'model': ...}, final ``norm.*`` and ``head.*``."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('norm')}
    width = model.dims[-1]
    state.update({'norm.weight': torch.ones(width), 'norm.bias': torch.zeros(width),
                  'head.weight': torch.randn(num_classes, width),
                  'head.bias': torch.zeros(num_classes)})
    torch.save({'model': state}, path)
    return path


def test_imagenet_file_converts_to_a_backbone_checkpoint(tmp_path):
    source = randomize(UniRepLKNet('A'))
    src = imagenet_file(tmp_path / 'unireplknet_a_in1k_224_acc77.03.pth', source)
    report = convert_checkpoint(src, tmp_path / 'backbone.pth')
    assert report.arch == 'A' and not report.deploy
    assert sorted(report.dropped) == ['head.bias', 'head.weight', 'norm.bias', 'norm.weight']
    assert sorted(report.missing) == sorted(f'norm{i}.{p}' for i in range(4)
                                            for p in ('weight', 'bias'))
    assert 'UniRepLKNet-A backbone, training form' in report.summary()
    model = UniRepLKNet('A', init_cfg=dict(type='Pretrained',
                                           checkpoint=str(tmp_path / 'backbone.pth')))
    model.init_weights()
    for key, value in source.state_dict().items():
        if not key.startswith('norm'):
            torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    with pytest.raises(CheckpointMismatchError, match='UniRepLKNet-A'):
        convert_checkpoint(src, tmp_path / 'wrong.pth', arch='T')


def test_folded_downstream_backbone_converts_with_its_norms(tmp_path):
    source = reparameterize(UniRepLKNet(SEG_ARCH))
    torch.save({'state_dict': {'backbone.' + k: v for k, v in source.state_dict().items()},
                'meta': {}}, tmp_path / 'deploy.pth')
    tool = load_tool('convert_checkpoint.py')
    assert tool.main([str(tmp_path / 'deploy.pth'), str(tmp_path / 'b.pth')]) == 0
    report = convert_checkpoint(tmp_path / 'deploy.pth', tmp_path / 'b.pth')
    assert report.deploy and report.arch == 'custom' and not report.missing
    assert report.num_tensors == len(source.state_dict())


def test_unireplknet_segmentor_exports_to_onnx(tmp_path):
    pytest.importorskip('onnxruntime')
    from mmreplk.deployment import export_onnx
    source, _ = legacy_downstream_file(SEG_CONFIG, tmp_path / 'trained.pth')
    result = export_onnx(SEG_CONFIG, source, tmp_path / 'model.onnx', shape=(64, 64))
    assert result.max_abs_output > 0
    assert result.max_abs_diff <= 1e-4 * result.max_abs_output


def test_an_arch_of_the_other_family_is_refused_by_name(tmp_path):
    from mmreplk.models import RepLKNet
    torch.save(UniRepLKNet(SEG_ARCH).state_dict(), tmp_path / 'uni.pth')
    with pytest.raises(CheckpointMismatchError, match='holds a UniRepLKNet; --arch 31B'):
        convert_checkpoint(tmp_path / 'uni.pth', tmp_path / 'out.pth', arch='31B')
    arch = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 1, 1], channels=[8, 16, 24, 32],
                small_kernel=5, dw_ratio=1, ffn_ratio=2)
    torch.save(RepLKNet(arch).state_dict(), tmp_path / 'replk.pth')
    with pytest.raises(CheckpointMismatchError, match='holds a RepLKNet; --arch T'):
        convert_checkpoint(tmp_path / 'replk.pth', tmp_path / 'out.pth', arch='T')

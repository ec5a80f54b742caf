"""Folding a whole segmentor / detector with ``mmreplk.reparameterize`` leaves its outputs unchanged."""
import torch
from helpers import TINY_ARCH, assert_close_relative, randomize_bn_stats
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmreplk import reparameterize
from mmreplk.models import RepLKNet

CHANNELS = TINY_ARCH['channels']
BACKBONE = dict(type='RepLKNet', arch=TINY_ARCH, drop_path_rate=0.)


def build(model_cfg, scope):
    init_default_scope(scope)
    from mmengine.registry import MODELS
    model = MODELS.build(model_cfg)
    randomize_bn_stats(model)
    return model.eval()


def flatten(outputs):
    if torch.is_tensor(outputs):
        return [outputs]
    return [t for item in outputs for t in flatten(item)]


def assert_folded_equal(model, run):
    with torch.no_grad():
        expected = flatten(run(model))
        reparameterize(model)
        folded = flatten(run(model))
    backbone = model.backbone
    assert isinstance(backbone, RepLKNet) and backbone.deploy
    assert not any('lkb_origin' in k or 'prelkb_bn' in k for k in model.state_dict())
    assert len(folded) == len(expected) > 0
    for out, ref in zip(folded, expected):
        assert_close_relative(out, ref)


def test_upernet_reparam_equivalence():
    norm = dict(type='BN')
    model = build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.7, 116.3, 103.5],
                               std=[58.4, 57.1, 57.4], bgr_to_rgb=True, size=(64, 64)),
        backbone=BACKBONE,
        decode_head=dict(type='UPerHead', in_channels=CHANNELS, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=16, dropout_ratio=0.1, num_classes=5,
                         norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=CHANNELS[2], in_index=2, channels=8,
                            num_convs=1, concat_input=False, dropout_ratio=0.1, num_classes=5,
                            norm_cfg=norm, align_corners=False,
                            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole')), 'mmseg')
    inputs = torch.randn(2, 3, 64, 80)
    assert_folded_equal(model, lambda m: m(inputs, mode='tensor'))


def test_cascade_mask_rcnn_reparam_equivalence(tmp_path):
    from mmdet.structures import DetDataSample
    cfg_file = tmp_path / 'cascade.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'\n"
        f"model = dict(backbone=dict(_delete_=True, **{BACKBONE!r}),\n"
        f"             neck=dict(in_channels={CHANNELS!r}, out_channels=32),\n"
        "             rpn_head=dict(in_channels=32, feat_channels=32),\n"
        "             test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50)))\n")
    cfg = Config.fromfile(str(cfg_file))
    for stage in cfg.model.roi_head.bbox_head:
        stage.update(in_channels=32, fc_out_channels=64)
    cfg.model.roi_head.bbox_roi_extractor.out_channels = 32
    cfg.model.roi_head.mask_roi_extractor.out_channels = 32
    cfg.model.roi_head.mask_head.update(in_channels=32, conv_out_channels=32)
    model = build(cfg.model, 'mmdet')
    inputs = torch.randn(1, 3, 96, 128)
    sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                         pad_shape=(96, 128), scale_factor=(1., 1.)))
    # Proposals from the folded RPN must be the same boxes, so compare the whole tensor output.
    assert_folded_equal(model, lambda m: m(inputs, [sample], mode='tensor'))


def test_deploy_backbone_in_segmentor_loads_folded_state():
    model = build(dict(type='EncoderDecoder', backbone=BACKBONE,
                       decode_head=dict(type='FCNHead', in_channels=CHANNELS[3], in_index=3,
                                        channels=8, num_convs=1, num_classes=3,
                                        loss_decode=dict(type='CrossEntropyLoss')),
                       test_cfg=dict(mode='whole')), 'mmseg')
    reparameterize(model)
    target = build(dict(type='EncoderDecoder', backbone=dict(BACKBONE, deploy=True),
                        decode_head=dict(type='FCNHead', in_channels=CHANNELS[3], in_index=3,
                                         channels=8, num_convs=1, num_classes=3,
                                         loss_decode=dict(type='CrossEntropyLoss')),
                        test_cfg=dict(mode='whole')), 'mmseg')
    target.load_state_dict(model.state_dict(), strict=True)
    inputs = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(inputs, mode='tensor'), model(inputs, mode='tensor'))

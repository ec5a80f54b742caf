# Cascade Mask R-CNN with a tiny RepLKNet backbone and narrow heads, for fast tool tests.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']

custom_imports = dict(imports=['mmreplk'], allow_failed_imports=False)
default_scope = 'mmdet'

width = 16
model = dict(
    backbone=dict(
        _delete_=True,
        type='RepLKNet',
        arch=dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1],
                  channels=[8, 16, 24, 32], small_kernel=5, dw_ratio=1, ffn_ratio=2),
        drop_path_rate=0.),
    neck=dict(in_channels=[8, 16, 24, 32], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=[
            dict(type='Shared2FCBBoxHead', in_channels=width, fc_out_channels=32,
                 roi_feat_size=7, num_classes=3, reg_class_agnostic=True,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=stds),
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                         [0.033, 0.033, 0.067, 0.067])
        ],
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=3)),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50)))

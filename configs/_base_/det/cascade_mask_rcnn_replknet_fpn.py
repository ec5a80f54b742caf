# Cascade Mask R-CNN with a RepLKNet-31B backbone, FPN and 4conv1fc GIoU box heads (the paper's
# COCO detector). Leaf configs pick the variant and its drop-path rate.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']

custom_imports = dict(imports=['mmreplk'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RepLKNet',
        arch='31B',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.6,
        norm_cfg=norm_cfg,
        with_cp=True,
        # Users set the released ImageNet file here (--cfg-options
        # model.backbone.init_cfg.checkpoint=PATH); unset, training starts from scratch.
        init_cfg=dict(type='Pretrained', checkpoint=None)),
    neck=dict(in_channels=[128, 256, 512, 1024], out_channels=256, num_outs=5),
    # One 4conv1fc head per cascade stage; the stages differ only in their box-delta scales.
    roi_head=dict(bbox_head=[
        dict(
            type='Shared4Conv1FCBBoxHead',
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=stds),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=norm_cfg,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
    ]))

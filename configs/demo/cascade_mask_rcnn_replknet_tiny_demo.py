# A CPU-sized Cascade Mask R-CNN for the generated shapes dataset (mmreplk.datasets.demo_coco):
# a tiny RepLKNet (kernels 13..7) with plain BN, trained from scratch at 128x128. It keeps the
# paper's detector structure (FPN, RPN, 3-stage cascade with GIoU loss on decoded boxes, mask
# heads) with narrow layers, 2-fc box heads, 2-conv mask heads and fewer proposals and RoIs.
# Generate the data first: python tools/generate_demo_data.py coco data/demo_coco
_base_ = [
    '../_base_/det/cascade_mask_rcnn_replknet_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/det/default_runtime.py',
]

data_root = 'data/demo_coco/'
classes = ('square', 'disc', 'triangle')
num_classes = len(classes)
image_scale = (128, 128)
width = 32
norm_cfg = dict(type='BN', requires_grad=True)

bbox_head = dict(
    type='Shared2FCBBoxHead',
    in_channels=width,
    fc_out_channels=128,
    roi_feat_size=7,
    num_classes=num_classes,
    reg_class_agnostic=False,
    reg_decoded_bbox=True,
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=10.0))

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        arch=dict(_delete_=True, large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1],
                  channels=[16, 32, 64, 128], small_kernel=5, dw_ratio=1, ffn_ratio=2),
        drop_path_rate=0.0,
        norm_cfg=norm_cfg,
        with_cp=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=[
            dict(bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                            target_stds=[0.1, 0.1, 0.2, 0.2])),
            dict(bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                            target_stds=[0.05, 0.05, 0.1, 0.1])),
            dict(bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                            target_stds=[0.033, 0.033, 0.067, 0.067])),
        ],
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(num_convs=2, in_channels=width, conv_out_channels=width,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=[
            dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                               min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                              add_gt_as_proposals=True),
                 mask_size=28, pos_weight=-1, debug=False) for iou in (0.5, 0.6, 0.7)
        ]),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

metainfo = dict(classes=classes, palette=[(220, 20, 60), (0, 128, 255), (60, 180, 75)])
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=4)))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[7], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# Deterministic: the depth-wise conv dispatcher takes its fixed path order instead of timing the
# paths, so a run repeats its box and mask mAP on a given machine kind (see the seg demo config).
randomness = dict(seed=0, deterministic=True)

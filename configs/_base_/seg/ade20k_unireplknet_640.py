# ADE20K as the authors' UniRepLKNet 640 configs state it: train: resize to scale (2560, 640) x
# ratio 0.5-2.0, 640 crop; test: resize to (2560, 640), then to the next multiple of 32.
# Multi-scale + flip test (--tta): the ratios their 640 files leave commented out, 0.75-1.25.
#
# Their 640 files define this train_pipeline but do not pass it to `data.train` (only val and
# test get theirs), so under mmcv 1.x config inheritance their training read the 512 pipeline of
# the ade20k base: scale (2048, 512), 512 crops. We train as the files, their names and their
# README state (640 crops); to train as their runs probably did, inherit ade20k_unireplknet_512
# for the training pipeline (or pass --cfg-options with its train_dataloader.dataset.pipeline).
_base_ = ['./ade20k_unireplknet_512.py']

crop_size = (640, 640)
test_scale = (2560, 640)
img_ratios = [0.75, 1.0, 1.25]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=test_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(test_scale[0] * r), int(test_scale[1] * r)),
                  keep_ratio=True) for r in img_ratios],
            [dict(type='ResizeToMultiple', size_divisor=32)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

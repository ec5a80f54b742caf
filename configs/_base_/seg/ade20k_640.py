# The authors' 640-crop ADE20K data: their 512 pipelines (train: resize to scale (2048, 512) x
# ratio 0.5-2.0; test: resize to (2048, 512), which the slide test covers with 640 windows) with a
# 640 train crop. mmseg's ade20k_640x640 resizes to (2560, 640) instead.
_base_ = ['./ade20k_512.py']

crop_size = (640, 640)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

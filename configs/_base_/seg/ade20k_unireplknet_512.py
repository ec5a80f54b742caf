# ADE20K as the authors' UniRepLKNet 512 configs read it (mmseg 0.x pipelines under their files):
# train: resize to scale (2048, 512) x ratio 0.5-2.0, 512 crop, flip, photometric distortion
# (mmseg's ade20k base); test: resize to (2048, 512), then to the next multiple of 32
# (ResizeToMultiple, which their test pipelines add). Multi-scale + flip test (--tta): their
# commented ratios 0.5-1.75 of the single-scale test size, each also resized to a multiple of 32.
# Images per GPU are set by each leaf config, with its schedule.
_base_ = ['mmseg::_base_/datasets/ade20k.py']

test_scale = (2048, 512)
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    # Annotations are loaded after the resizes: the metric compares at the original size.
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
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# mmseg's ade20k pipelines (train: resize to scale (2048, 512) x ratio 0.5-2.0, 512 crop; test:
# resize to (2048, 512)), as in the authors' configs, and the paper's multi-scale + flip test:
# ratios 0.5-1.75 of the single-scale test size (mmseg's own tta_pipeline scales the raw image).
# Images per GPU are set by each leaf config, with its schedule.
_base_ = ['mmseg::_base_/datasets/ade20k.py']

test_scale = (2048, 512)
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(test_scale[0] * r), int(test_scale[1] * r)),
                  keep_ratio=True) for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]

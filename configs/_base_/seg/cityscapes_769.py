# mmseg's cityscapes_769x769 pipelines (train: resize to scale (2049, 1025) x ratio 0.5-2.0, 769
# crop; test: resize to (2049, 1025)), as in the authors' config, and the paper's multi-scale +
# flip test: ratios 0.5-1.75 of the single-scale test size (mmseg's own tta_pipeline scales the raw
# image). Images per GPU are set by the leaf config, with its schedule.
_base_ = ['mmseg::_base_/datasets/cityscapes_769x769.py']

test_scale = (2049, 1025)
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

train_dataloader = dict(num_workers=4)

# COCO instance segmentation (box + mask evaluation) with the paper's 3x training augmentation:
# flip, then either multi-scale resize or resize -> random crop -> multi-scale resize.
# Expected layout under data_root: annotations/instances_{train,val}2017.json, train2017/, val2017/.
_base_ = ['mmdet::_base_/datasets/coco_instance.py']

multi_scale = [(1333, short) for short in range(480, 801, 32)]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='AutoAugment',
        policies=[
            [dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]

train_dataloader = dict(batch_size=1, dataset=dict(pipeline=train_pipeline))

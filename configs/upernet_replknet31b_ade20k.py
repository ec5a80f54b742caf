# UperNet + RepLKNet-31B (ImageNet-1K pretrain) on ADE20K, crop 512, 160k x 16 images.
# Paper: 49.9 mIoU single-scale / 50.6 multi-scale (--tta), 112M parameters.
_base_ = [
    '_base_/seg/upernet_replknet.py', '_base_/seg/ade20k_512.py',
    'mmseg::_base_/default_runtime.py', '_base_/seg/schedule_160k_adamw.py'
]

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='31B', drop_path_rate=0.5),
    test_cfg=dict(mode='whole'))

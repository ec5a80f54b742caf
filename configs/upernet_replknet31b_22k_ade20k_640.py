# UperNet + RepLKNet-31B (ImageNet-22K pretrain) on ADE20K, crop 640, sliding-window test.
# Paper: 51.5 mIoU single-scale / 52.3 multi-scale (--tta), 112M parameters.
# The authors' schedule: 64 GPUs x 2 images = global batch 128, 40k iterations, warm-up 400 (5.12M
# samples); here 8 GPUs x 16 images (about 37 GiB each, README). Fewer images per GPU: gradient
# accumulation, as explained in _base_/seg/schedule_adamw_poly.py.
_base_ = [
    '_base_/seg/upernet_replknet.py', '_base_/seg/ade20k_640.py',
    'mmseg::_base_/default_runtime.py', '_base_/seg/schedule_adamw_poly.py'
]

crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='31B', drop_path_rate=0.3),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))
train_dataloader = dict(batch_size=16)

# UperNet + RepLKNet-31B (ImageNet-1K pretrain) on Cityscapes, crop 769, whole-image test.
# Paper: 83.1 mIoU single-scale / 83.5 multi-scale (--tta), 110M parameters.
# The authors' schedule: 32 GPUs x 2 images = global batch 64, 20k iterations, warm-up 400 (1.28M
# samples, a quarter of ADE20K's); here 8 GPUs x 8 images (about 18 GiB each, README). Fewer images
# per GPU: gradient accumulation, as explained in _base_/seg/schedule_adamw_poly.py.
_base_ = [
    '_base_/seg/upernet_replknet.py', '_base_/seg/cityscapes_769.py',
    'mmseg::_base_/default_runtime.py', '_base_/seg/schedule_adamw_poly.py'
]

crop_size = (769, 769)
max_iters = 20000
warmup_iters = 400
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='31B', drop_path_rate=0.5),
    decode_head=dict(num_classes=19, align_corners=True),
    auxiliary_head=dict(num_classes=19, align_corners=True),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(batch_size=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(checkpoint=dict(interval=max_iters // 10))

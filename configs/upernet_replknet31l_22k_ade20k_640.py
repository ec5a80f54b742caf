# UperNet + RepLKNet-31L (ImageNet-22K pretrain) on ADE20K, crop 640, sliding-window test.
# Paper: 52.4 mIoU single-scale / 52.7 multi-scale (--tta), 207M parameters.
# The authors' schedule: 64 GPUs x 1 image = global batch 64, 80k iterations, warm-up 800 (5.12M
# samples); here 8 GPUs x 8 images (about 22 GiB each, README). Fewer images per GPU: gradient
# accumulation, as explained in _base_/seg/schedule_adamw_poly.py.
_base_ = ['./upernet_replknet31b_22k_ade20k_640.py']

max_iters = 80000
warmup_iters = 800
model = dict(
    backbone=dict(arch='31L', drop_path_rate=0.3),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
train_dataloader = dict(batch_size=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(checkpoint=dict(interval=max_iters // 10))

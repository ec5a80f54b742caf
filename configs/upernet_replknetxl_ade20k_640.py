# UperNet + RepLKNet-XL (MegData73M pretrain) on ADE20K, crop 640, sliding-window test.
# Paper: 55.2 mIoU single-scale / 56.0 multi-scale (--tta), 374M parameters.
# XL is pretrained on inputs scaled to [-1, 1] and normalises every output stage downstream.
# The authors' schedule: 16 GPUs (A100) x 2 images = global batch 32, 160k iterations, warm-up 1500
# (5.12M samples); here 8 GPUs x 4 images (about 16 GiB each, README). Fewer images per GPU:
# gradient accumulation, as explained in _base_/seg/schedule_adamw_poly.py.
_base_ = ['./upernet_replknet31b_22k_ade20k_640.py']

max_iters = 160000
warmup_iters = 1500
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(arch='XL', drop_path_rate=0.5, norm_intermediate_features=True),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))
train_dataloader = dict(batch_size=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(checkpoint=dict(interval=max_iters // 10))

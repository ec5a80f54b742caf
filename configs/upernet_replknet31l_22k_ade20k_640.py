# UperNet + RepLKNet-31L (ImageNet-22K pretrain) on ADE20K, crop 640, sliding-window test.
# Paper: 52.4 mIoU single-scale / 52.7 multi-scale (--tta), 207M parameters.
_base_ = ['./upernet_replknet31b_22k_ade20k_640.py']

model = dict(
    backbone=dict(arch='31L', drop_path_rate=0.3),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))

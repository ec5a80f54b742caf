# Cascade Mask R-CNN 3x, RepLKNet-XL pretrained on MegData73M (paper: box AP 55.5, mask AP 48.0).
# Pretrained file (--cfg-options model.backbone.init_cfg.checkpoint=PATH):
# RepLKNet-XL_MegData73M_pretrain.pth
# XL has no parallel small kernel and a 1.5x wide large-kernel conv (both from its arch entry);
# downstream it normalises every stage output, and its pretraining used mean = std = 127.5 (RGB).
_base_ = './cascade_mask_rcnn_replknet31b_coco.py'

model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(arch='XL', drop_path_rate=0.5, norm_intermediate_features=True),
    neck=dict(in_channels=[256, 512, 1024, 2048]))

train_dataloader = dict(batch_size=4)

# Cascade Mask R-CNN 3x, RepLKNet-31L pretrained on ImageNet-22K (paper: box AP 53.9, mask AP 46.5).
# Pretrained file: --cfg-options model.backbone.init_cfg.checkpoint=RepLKNet-31L_ImageNet-22K.pth
_base_ = './cascade_mask_rcnn_replknet31b_coco.py'

model = dict(
    backbone=dict(arch='31L', drop_path_rate=0.7),
    neck=dict(in_channels=[192, 384, 768, 1536]))

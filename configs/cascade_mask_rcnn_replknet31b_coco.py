# Cascade Mask R-CNN 3x, RepLKNet-31B pretrained on ImageNet-1K (paper: box AP 52.2, mask AP 45.2).
# Pretrained file: --cfg-options model.backbone.init_cfg.checkpoint=RepLKNet-31B_ImageNet-1K_224.pth
_base_ = [
    './_base_/det/cascade_mask_rcnn_replknet_fpn.py',
    './_base_/det/coco_instance_ms_crop.py',
    './_base_/det/schedule_adamw_3x.py',
    '_base_/det/default_runtime.py',
]

model = dict(
    backbone=dict(arch='31B', drop_path_rate=0.6),
    neck=dict(in_channels=[128, 256, 512, 1024]))

# Cascade Mask R-CNN 3x, UniRepLKNet-T pretrained on ImageNet-1K. The authors' README: box AP
# 51.7, mask AP 44.9, 89M parameters, 749G FLOPs (1280x800).
# Pretrained file (their detection configs leave it unset; this is the file their T segmentation
# config names):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_t_in1k_224_acc83.21.pth
# Recipe from their casc_mask_rcnn_unireplknet_t_in1k_fpn_3x_coco.py: drop path 0.3, gradient
# checkpointing, layer-wise lr decay 0.8 over 12 layers, 8 GPUs x 2 images (global batch 16).
_base_ = [
    './_base_/det/cascade_mask_rcnn_unireplknet_fpn.py',
    './_base_/det/coco_instance_ms_crop.py',
    './_base_/det/schedule_unireplknet_3x.py',
    '_base_/det/default_runtime.py',
]

model = dict(
    backbone=dict(arch='T', drop_path_rate=0.3),
    neck=dict(in_channels=[80, 160, 320, 640]))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, decay_rate=0.8))

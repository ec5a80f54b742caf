# Cascade Mask R-CNN 3x, UniRepLKNet-S pretrained on ImageNet-1K. The authors' README: box AP
# 53.0, mask AP 45.9, 113M parameters, 835G FLOPs (1280x800).
# Pretrained file (their detection configs leave it unset; this is the file their S segmentation
# config names):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_s_in1k_224_acc83.91.pth
# Recipe from their casc_mask_rcnn_unireplknet_s_in1k_fpn_3x_coco.py: drop path 0.5, gradient
# checkpointing, layer-wise lr decay 0.8 over 12 layers, 8 GPUs x 2 images (global batch 16).
_base_ = './cascade_mask_rcnn_unireplknet_t_coco.py'

model = dict(
    backbone=dict(arch='S', drop_path_rate=0.5),
    neck=dict(in_channels=[96, 192, 384, 768]))

# Cascade Mask R-CNN 3x, UniRepLKNet-B pretrained on ImageNet-22K. The authors' README: box AP
# 54.8, mask AP 47.4, 155M parameters, 978G FLOPs (1280x800).
# Pretrained file (their detection configs leave it unset; this is the file their B segmentation
# config names):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_b_in22k_to_in1k_384_acc87.40.pth
# Recipe from their casc_mask_rcnn_unireplknet_b_in22k_fpn_3x_coco.py: drop path 0.6, gradient
# checkpointing, layer-wise lr decay 0.8 over 12 layers, weight EMA (momentum 1e-4), 8 GPUs x 2.
_base_ = './cascade_mask_rcnn_unireplknet_s_22k_coco.py'

model = dict(
    backbone=dict(arch='B', drop_path_rate=0.6),
    neck=dict(in_channels=[128, 256, 512, 1024]))

# Cascade Mask R-CNN 3x, UniRepLKNet-L pretrained on ImageNet-22K. The authors' README: box AP
# 55.8, mask AP 48.4, 276M parameters, 1385G FLOPs (1280x800).
# Pretrained file (their detection configs leave it unset; this is the file their L segmentation
# config names):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_l_in22k_to_in1k_384_acc87.88.pth
# Recipe from their casc_mask_rcnn_unireplknet_l_in22k_fpn_3x_coco.py: drop path 0.7, gradient
# checkpointing, layer-wise lr decay 0.7 over 12 layers, weight EMA (momentum 1e-4), 8 GPUs x 2.
_base_ = './cascade_mask_rcnn_unireplknet_b_22k_coco.py'

model = dict(
    backbone=dict(arch='L', drop_path_rate=0.7),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7))

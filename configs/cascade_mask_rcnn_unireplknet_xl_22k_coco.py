# Cascade Mask R-CNN 3x, UniRepLKNet-XL pretrained on ImageNet-22K. The authors' README: box AP
# 56.4, mask AP 49.0, 443M parameters, 1952G FLOPs (1280x800).
# Pretrained file: none of their configs names one; the 22K->1K file, as for B and L:
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_xl_in22k_to_in1k_384_acc87.96.pth
# (unireplknet_xl_in22k_pretrain.pth loads the same way).
# Recipe from their casc_mask_rcnn_unireplknet_xl_in22k_fpn_3x_coco.py: drop path 0.7, gradient
# checkpointing, layer-wise lr decay 0.7 over 12 layers, weight EMA (momentum 1e-4), 8 GPUs x 2.
_base_ = './cascade_mask_rcnn_unireplknet_l_22k_coco.py'

model = dict(
    backbone=dict(arch='XL'),
    neck=dict(in_channels=[256, 512, 1024, 2048]))

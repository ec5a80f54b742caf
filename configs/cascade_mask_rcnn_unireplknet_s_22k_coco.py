# Cascade Mask R-CNN 3x, UniRepLKNet-S pretrained on ImageNet-22K. The authors' README: box AP
# 54.3, mask AP 47.1, 113M parameters, 835G FLOPs (1280x800).
# Pretrained file (their detection configs leave it unset; the 22K-only S file is lost, their
# README says; this is the file their S-22K segmentation configs name):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_s_in22k_to_in1k_384_acc86.44.pth
# Recipe from their casc_mask_rcnn_unireplknet_s_in22k_fpn_3x_coco.py: as S-1K (drop path 0.5,
# decay 0.8 over 12 layers) plus an exponential moving average of the weights (mmdet 2.x's
# ExpMomentumEMAHook, momentum 1e-4, buffers averaged too: here mmengine's EMAHook with
# ExpMomentumEMA), which validation and the saved checkpoints use.
_base_ = './cascade_mask_rcnn_unireplknet_s_coco.py'

custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, gamma=2000,
         update_buffers=True, priority=49)
]

# Cascade Mask R-CNN 3x, RepLKNet-31B pretrained on ImageNet-22K (paper: box AP 53.0, mask AP 46.0).
# Pretrained file: --cfg-options model.backbone.init_cfg.checkpoint=RepLKNet-31B_ImageNet-22K.pth
_base_ = './cascade_mask_rcnn_replknet31b_coco.py'

model = dict(backbone=dict(drop_path_rate=0.4))

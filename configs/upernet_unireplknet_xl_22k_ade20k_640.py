# UperNet + UniRepLKNet-XL (ImageNet-22K pretrain) on ADE20K, crop 640, whole-image test at
# (2560, 640). The authors' README: 55.2 mIoU single-scale / 55.6 multi-scale (--tta), 425M
# parameters, 3420G FLOPs; checkpoint "TBA" (lost).
# The authors released no XL ADE20K config: this is their L-22K-640 recipe (drop path 0.4,
# layer-wise lr decay 0.85 over 12 layers, 160k iterations at 8 GPUs x 2 images) with XL's widths.
# Pretrained file: no config of theirs names one; the 22K->1K file, as for B and L:
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_xl_in22k_to_in1k_384_acc87.96.pth
# (unireplknet_xl_in22k_pretrain.pth loads the same way).
_base_ = ['./upernet_unireplknet_l_22k_ade20k_640.py']

model = dict(
    backbone=dict(arch='XL'),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))

# UperNet + UniRepLKNet-S (ImageNet-1K pretrain) on ADE20K, crop 512, whole-image test.
# The authors' README: 50.5 mIoU single-scale / 51.0 multi-scale (--tta), 86M parameters,
# 1036G FLOPs.
# Pretrained file:
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_s_in1k_224_acc83.91.pth
# Recipe from their upernet_unireplknet_s_512_160k_ade20k.py: drop path 0.3, gradient
# checkpointing, layer-wise lr decay 0.9 over 12 layers, 160k iterations at 8 GPUs x 2 images.
_base_ = ['./upernet_unireplknet_t_ade20k_512.py']

model = dict(
    backbone=dict(arch='S', drop_path_rate=0.3, with_cp=True),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, decay_rate=0.9))

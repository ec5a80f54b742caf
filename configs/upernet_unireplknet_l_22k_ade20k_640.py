# UperNet + UniRepLKNet-L (ImageNet-22K pretrain, fine-tuned on 1K at 384) on ADE20K, crop 640,
# whole-image test at (2560, 640). The authors' README: 54.5 mIoU single-scale / 55.0
# multi-scale (--tta), 254M parameters, 2507G FLOPs.
# Pretrained file (their config's):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_l_in22k_to_in1k_384_acc87.88.pth
# Recipe from their upernet_unireplknet_l_in22k_640_160k_ade20k.py: drop path 0.4, gradient
# checkpointing, layer-wise lr decay 0.85 over 12 layers, 160k iterations at 8 GPUs x 2 images.
# Their 640 train pipeline never reached their training (see _base_/seg/ade20k_unireplknet_640.py);
# this config trains on 640 crops as their file, config name and README state.
_base_ = ['./upernet_unireplknet_b_22k_ade20k_640.py']

model = dict(
    backbone=dict(arch='L', drop_path_rate=0.4),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, decay_rate=0.85))

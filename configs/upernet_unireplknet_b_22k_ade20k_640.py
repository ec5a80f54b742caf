# UperNet + UniRepLKNet-B (ImageNet-22K pretrain, fine-tuned on 1K at 384) on ADE20K, crop 640,
# whole-image test at (2560, 640). The authors' README: 53.5 mIoU single-scale / 53.9
# multi-scale (--tta), 130M parameters, 1850G FLOPs.
# Pretrained file (their config's):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_b_in22k_to_in1k_384_acc87.40.pth
# Recipe from their upernet_unireplknet_b_in22k_640_160k_ade20k.py: drop path 0.3, gradient
# checkpointing, layer-wise lr decay 0.9 over 12 layers, 160k iterations at 8 GPUs x 2 images.
# Their 640 train pipeline never reached their training (see _base_/seg/ade20k_unireplknet_640.py);
# this config trains on 640 crops as their file, config name and README state.
_base_ = ['./upernet_unireplknet_s_22k_ade20k_640.py']

model = dict(
    backbone=dict(arch='B', drop_path_rate=0.3),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, decay_rate=0.9))

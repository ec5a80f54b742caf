# UperNet + UniRepLKNet-S (ImageNet-22K pretrain, fine-tuned on 1K at 384) on ADE20K, crop 640,
# whole-image test at (2560, 640). The authors' README: 86M parameters, mIoU and FLOPs "TBA".
# Pretrained file (their config's; the 22K-only S file is lost, their README says):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_s_in22k_to_in1k_384_acc86.44.pth
# Recipe from their upernet_unireplknet_s_in22k_640_160k_ade20k.py: drop path 0.3, gradient
# checkpointing, layer-wise lr decay 0.9 with num_layers 9 (as S-22K-512: blocks 24-26 of
# stages.2 get lr / 0.9; kept), 160k iterations at 8 GPUs x 2 images, whole-image test (not
# sliding).
# Their 640 train pipeline never reached their training (see _base_/seg/ade20k_unireplknet_640.py);
# this config trains on 640 crops as their file, config name and README state.
_base_ = [
    '_base_/seg/upernet_unireplknet.py', '_base_/seg/ade20k_unireplknet_640.py',
    'mmseg::_base_/default_runtime.py', '_base_/seg/schedule_unireplknet_160k.py'
]

crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='S', drop_path_rate=0.3, with_cp=True),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(paramwise_cfg=dict(num_layers=9, decay_rate=0.9))

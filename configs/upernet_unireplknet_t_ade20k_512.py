# UperNet + UniRepLKNet-T (ImageNet-1K pretrain) on ADE20K, crop 512, whole-image test.
# The authors' README: 48.6 mIoU single-scale / 49.1 multi-scale (--tta), 61M parameters,
# 946G FLOPs.
# Pretrained file:
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_t_in1k_224_acc83.21.pth
# Recipe from their upernet_unireplknet_t_512_160k_ade20k.py: drop path 0.2, no gradient
# checkpointing, layer-wise lr decay rate 1 (none; "0.9 or 1.0 makes almost no difference") over
# 9 layers, 160k iterations at 8 GPUs x 2 images (the schedule base explains accumulation).
_base_ = [
    '_base_/seg/upernet_unireplknet.py', '_base_/seg/ade20k_unireplknet_512.py',
    'mmseg::_base_/default_runtime.py', '_base_/seg/schedule_unireplknet_160k.py'
]

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='T', drop_path_rate=0.2, with_cp=False),
    decode_head=dict(in_channels=[80, 160, 320, 640]),
    auxiliary_head=dict(in_channels=320),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(paramwise_cfg=dict(num_layers=9, decay_rate=1.0))

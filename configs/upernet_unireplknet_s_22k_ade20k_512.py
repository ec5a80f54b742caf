# UperNet + UniRepLKNet-S (ImageNet-22K pretrain, fine-tuned on 1K at 384) on ADE20K, crop 512,
# whole-image test. The authors' README: 51.9 mIoU single-scale / 52.7 multi-scale (--tta), 86M
# parameters, 1036G FLOPs.
# Pretrained file (their config's; the 22K-only S file is lost, their README says):
# --cfg-options model.backbone.init_cfg.checkpoint=unireplknet_s_in22k_to_in1k_384_acc86.44.pth
# Recipe from their upernet_unireplknet_s_in22k_512_160k_ade20k.py: as S-512 but with num_layers 9
# for the layer-wise decay (0.9). Their rule counts the blocks of stages.2 in threes from layer 3,
# so with 27 blocks and num_layers 9 blocks 21-23 get the heads' lr and blocks 24-26 lr / 0.9; their
# training file wins over the S-512 one, so this is kept (the constructor logs a warning).
_base_ = ['./upernet_unireplknet_s_ade20k_512.py']

optim_wrapper = dict(paramwise_cfg=dict(num_layers=9, decay_rate=0.9))

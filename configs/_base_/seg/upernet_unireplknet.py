# UperNet with a UniRepLKNet backbone, as the authors' ADE20K configs build it (AILab-CVC/
# UniRepLKNet, segmentation/configs/ade20k/): mmseg's UperNet (pool scales 1/2/3/6, 512 channels,
# auxiliary FCN head on stage 3 with loss weight 0.4) and SyncBN everywhere, the backbone's block
# BNs included (their mmseg backbone wrapper sets use_sync_bn=True). The same heads as the RepLKNet
# UperNet; leaf configs pick the arch, drop-path rate, head input widths and the pretrained file.
_base_ = ['./upernet_replknet.py', '../models/unireplknet.py']

model = dict(
    backbone=dict(_delete_=True, **_base_.unireplknet_backbone, drop_path_rate=0.2),
    decode_head=dict(in_channels=[80, 160, 320, 640]),
    auxiliary_head=dict(in_channels=320))

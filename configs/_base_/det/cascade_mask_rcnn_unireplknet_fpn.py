# Cascade Mask R-CNN with a UniRepLKNet backbone, as the authors' COCO configs build it
# (AILab-CVC/UniRepLKNet, detection/configs/coco/): the same FPN (5 levels, 256 channels) and
# 4conv1fc GIoU box heads with SyncBN as the RepLKNet detector, and SyncBN in the backbone's blocks
# (their mmdet backbone wrapper sets use_sync_bn=True). Leaf configs pick the arch, drop-path rate,
# FPN input widths and the pretrained file.
_base_ = ['./cascade_mask_rcnn_replknet_fpn.py', '../models/unireplknet.py']

model = dict(
    backbone=dict(_delete_=True, **_base_.unireplknet_backbone, drop_path_rate=0.3),
    neck=dict(in_channels=[80, 160, 320, 640]))

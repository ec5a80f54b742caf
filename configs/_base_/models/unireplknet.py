# The UniRepLKNet backbone as the authors' downstream configs build it, shared by the UperNet and
# Cascade Mask R-CNN bases (each sets its own drop-path rate): SyncBN in the blocks (their mmseg /
# mmdet backbone wrappers set use_sync_bn=True) and gradient checkpointing. A variable, not a
# `model`, because those bases already inherit a `model` and mmengine refuses a key twice
# among bases.
unireplknet_backbone = dict(
    type='UniRepLKNet',
    arch='T',
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    with_cp=True,
    # Users set the authors' ImageNet file here (--cfg-options
    # model.backbone.init_cfg.checkpoint=PATH); unset, training starts from scratch.
    init_cfg=dict(type='Pretrained', checkpoint=None))

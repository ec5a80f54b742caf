# UperNet with a RepLKNet-31B backbone: the paper's segmentation model (SyncBN everywhere,
# gradient checkpointing on). Leaf configs pick the variant, drop-path rate and classes.
_base_ = ['mmseg::_base_/models/upernet_r50.py']

custom_imports = dict(imports=['mmreplk'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='RepLKNet',
        arch='31B',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.5,
        norm_cfg=norm_cfg,
        with_cp=True,
        # Users set the released ImageNet file here (--cfg-options
        # model.backbone.init_cfg.checkpoint=PATH); unset, training starts from scratch.
        init_cfg=dict(type='Pretrained', checkpoint=None)),
    decode_head=dict(in_channels=[128, 256, 512, 1024], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=512, in_index=2, channels=256, num_classes=150))

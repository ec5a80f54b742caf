# A UperNet with a tiny RepLKNet backbone for fast tests of the deployment and analysis tools.
_base_ = ['mmseg::_base_/models/upernet_r50.py']

custom_imports = dict(imports=['mmreplk'], allow_failed_imports=False)
default_scope = 'mmseg'

channels = [8, 16, 24, 32]
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='RepLKNet',
        arch=dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1], channels=channels,
                  small_kernel=5, dw_ratio=1, ffn_ratio=2),
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(in_channels=channels, channels=16, num_classes=5),
    auxiliary_head=dict(in_channels=channels[2], channels=8, num_classes=5))

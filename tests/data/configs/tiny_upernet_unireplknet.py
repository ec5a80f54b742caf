# The tiny UperNet of the deployment and analysis tests with a tiny UniRepLKNet backbone: every
# block type (3x3, dilated 13, 17 and 7 re-param blocks).
_base_ = ['./tiny_upernet_replknet.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UniRepLKNet',
        arch=dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32],
                  kernel_sizes=[[3], [13], [17, 3], [7]]),
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True)))

# The tiny Cascade Mask R-CNN of the deployment tests with a tiny UniRepLKNet backbone.
_base_ = ['./tiny_cascade_replknet.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UniRepLKNet',
        arch=dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32],
                  kernel_sizes=[[3], [13], [13, 5], [7]]),
        drop_path_rate=0.))

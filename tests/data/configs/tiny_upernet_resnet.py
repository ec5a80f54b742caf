# The same UperNet with a small ResNet (3x3 kernels), the small-kernel side of ERF comparisons.
_base_ = ['mmseg::_base_/models/upernet_r50.py']

default_scope = 'mmseg'

model = dict(
    pretrained=None,
    backbone=dict(depth=18, base_channels=16, stem_channels=16),
    decode_head=dict(in_channels=[16, 32, 64, 128], channels=16, num_classes=5),
    auxiliary_head=dict(in_channels=64, channels=8, num_classes=5))

# A CPU-sized Cascade Mask R-CNN with a UniRepLKNet backbone for the generated shapes dataset:
# the RepLKNet demo detector (data, narrow FPN and heads, plain BN, 128x128, schedule) with a
# narrow UniRepLKNet (kernels 3, 13 with dilated branches, 13/3, 13) and the authors' layer-wise
# learning-rate decay.
# Generate the data first: python tools/generate_demo_data.py coco data/demo_coco
_base_ = ['./cascade_mask_rcnn_replknet_tiny_demo.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UniRepLKNet',
        arch=dict(depths=[1, 1, 2, 1], dims=[16, 32, 64, 128],
                  kernel_sizes=[[3], [13], [13, 3], [13]]),
        drop_path_rate=0.0,
        norm_cfg=dict(type='BN', requires_grad=True),
        with_cp=False,
        init_cfg=None))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='UniRepLKNetLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=4, decay_rate=0.9, decay_type='layer_wise'))

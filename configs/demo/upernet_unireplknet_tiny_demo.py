# A CPU-sized UperNet-UniRepLKNet for the generated demo dataset: the RepLKNet demo (data, narrow
# UperNet, plain BN, 128x128 crops, schedule) with a narrow UniRepLKNet that keeps the family's
# kernels (3 in the first stage, 13 with its dilated branches in the others, 13 and 3 alternating
# in the third) and trains with the authors' layer-wise learning-rate decay.
# Generate the data first: python tools/generate_demo_data.py ade20k data/demo_ade
_base_ = ['./upernet_replknet_tiny_demo.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UniRepLKNet',
        arch=dict(depths=[1, 1, 2, 1], dims=[16, 32, 64, 128],
                  kernel_sizes=[[3], [13], [13, 3], [13]]),
        drop_path_rate=0.1,
        norm_cfg=dict(type='BN', requires_grad=True),
        with_cp=False,
        init_cfg=None))

# Layer ids (the authors' rule): stem 0, stage 1 1, stage 2 2, stage 3 3, stage 4 num_layers, heads
# num_layers + 1; the stem learns at 0.9^5 = 0.59 of the heads' rate.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='UniRepLKNetLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=4, decay_rate=0.9, decay_type='layer_wise'))

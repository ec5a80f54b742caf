# The authors' UniRepLKNet COCO optimisation (detection/configs/coco/*.py over InternImage's
# schedule_3x): AdamW (lr 1e-4, betas (0.9, 0.999), weight decay 0.05) with their layer-wise
# learning-rate decay (mmreplk.engine.UniRepLKNetLearningRateDecayOptimizerConstructor: no weight
# decay on 1-D parameters and biases; num_layers 12 in every COCO config, leaf configs set the
# decay rate), and the 3x schedule of ./schedule_adamw_3x.py (36 epochs, lr / 10 after epochs 27
# and 33, 500 linear warm-up iterations from 0.001 x lr). Their global batch: 8 GPUs x 2 images.
# Fewer images per GPU: batch_size b / k with optim_wrapper.accumulative_counts=k keeps the
# optimizer steps; the epochs stay, the warm-up (counted in iterations) becomes 500 k.
_base_ = ['./schedule_adamw_3x.py']

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='UniRepLKNetLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=12, decay_rate=0.8, decay_type='layer_wise'))

# The authors' UniRepLKNet ADE20K optimisation (segmentation/configs/ade20k/*.py): AdamW (lr 1e-4,
# betas (0.9, 0.999), weight decay 0.05) with their layer-wise learning-rate decay
# (mmreplk.engine.UniRepLKNetLearningRateDecayOptimizerConstructor: no weight decay on 1-D
# parameters and biases; leaf configs set num_layers and decay_rate from their files), linear
# decay ("poly", power 1) from lr at iteration 0 to 0 at 160k iterations with a linear warm-up
# factor from 1e-6 to 1 over the first 1500 on top (the two schedulers overlap and multiply):
# mmcv 1.x's poly policy with warm-up, lr(i) = lr x (1 - i / 160k) x min(1, 1e-6 + (1 - 1e-6) i /
# 1500), up to mmengine's schedulers reaching their end values one iteration early (1 at 1499,
# 0 at 159999).
# Their global batch is 8 GPUs x 2 images = 16 (2.56M samples); each leaf config sets the 2
# images per GPU. Fewer GPUs or images per GPU: gradient accumulation as explained in
# ./schedule_adamw_poly.py (multiply every iteration count of the schedule by the accumulation).
_base_ = ['./schedule_adamw_poly.py']

max_iters = 160000
warmup_iters = 1500

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='UniRepLKNetLearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=12, decay_rate=0.9, decay_type='layer_wise'),
    accumulative_counts=1)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters),
]

# Validation and checkpoints every tenth of the schedule.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(
    checkpoint=dict(type='CrashSafeCheckpointHook', by_epoch=False, interval=max_iters // 10))

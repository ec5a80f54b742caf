# The paper's optimisation: AdamW (lr 2e-4, wd 0.05, no decay on norm layers), linear warm-up
# from 1e-6 x lr, then linear ("poly", power 1) decay to 0.
#
# Stated for 8 GPUs x 2 images (global batch 16): 160k iterations. For another global batch B,
# keep the number of samples: max_iters = 160000 * 16 / B, and scale the warm-up end, val_interval
# and the checkpoint interval by the same factor (e.g. 4 GPUs x 4 images: unchanged; 16 GPUs x 2
# images: 80k). The learning rate is the paper's and is left as is; mmengine can rescale it
# linearly with the batch: --cfg-options auto_scale_lr.enable=True.
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']

max_iters = 160000
# The paper warms up for 1% of its schedule.
warmup_iters = 1600

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook', by_epoch=False, interval=16000))
auto_scale_lr = dict(enable=False, base_batch_size=16)

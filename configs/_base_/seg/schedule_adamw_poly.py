# The paper's optimisation: AdamW (lr 2e-4, wd 0.05, no decay on norm layers), linear warm-up
# from 1e-6 x lr, then linear ("poly", power 1) decay to 0. The numbers here are the authors'
# RepLKNet-31B ADE20K schedule (global batch 128, 40k iterations, warm-up 400); leaf configs with
# another schedule restate `param_scheduler`, `train_cfg` and the checkpoint interval.
#
# Each leaf config states the authors' global batch as 8 GPUs x `train_dataloader.batch_size`.
# On GPUs that hold fewer images, keep the global batch with gradient accumulation: batch_size b
# and `optim_wrapper.accumulative_counts` k with GPUs x b x k = the global batch. mmengine counts
# iterations in data batches and steps the optimizer every k of them, but schedulers with
# by_epoch=False step every iteration: multiply max_iters, the warm-up end, the PolyLR begin and
# end, val_interval and the checkpoint interval by k, which keeps the authors' optimizer steps and
# learning-rate curve (README, "Semantic segmentation", gives the command line). What changes is
# BN: SyncBN computes its statistics over the GPUs x b images of one forward instead of the global
# batch. The authors kept lr 2e-4 at every global batch they used (32, 64, 128); mmengine's
# `auto_scale_lr` would scale it linearly and does not count accumulation.
_base_ = ['mmseg::_base_/schedules/schedule_40k.py']

max_iters = 40000
warmup_iters = 400

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    accumulative_counts=1)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]

# Validation and checkpoints every tenth of the schedule.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(
    checkpoint=dict(type='CrashSafeCheckpointHook', by_epoch=False, interval=max_iters // 10))

# The paper's COCO 3x schedule: AdamW 4e-4, weight decay 0.05 (none on norm layers), 36 epochs
# with the learning rate divided by 10 after epochs 27 and 33, 500 linear warm-up iterations.
_base_ = ['mmdet::_base_/schedules/schedule_1x.py']

max_epochs = 36

train_cfg = dict(max_epochs=max_epochs)

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))

"""A tiny UniRepLKNet UperNet and Cascade Mask R-CNN (configs/demo/*unireplknet*) train a few
iterations on generated demo data, with the layer-wise lr decay, and evaluate."""
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config

from mmreplk.apis import train
from mmreplk.datasets import generate_demo_coco, generate_demo_dataset

DEMO = Path(__file__).parents[2] / 'configs' / 'demo'


def _point_at(cfg, root, work_dir):
    cfg.work_dir = str(work_dir)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(root) + '/'
    cfg.default_hooks.logger.interval = 1


def _losses(runner):
    return np.asarray(runner.message_hub.get_scalar('train/loss').data[0])


def test_tiny_unireplknet_upernet_trains_on_the_demo_data(tmp_path):
    root = generate_demo_dataset(tmp_path / 'demo_ade', num_train=8, num_val=2, size=64, seed=1)
    cfg = Config.fromfile(DEMO / 'upernet_unireplknet_tiny_demo.py')
    _point_at(cfg, root, tmp_path / 'work')
    iters = 12
    cfg.train_cfg.update(max_iters=iters, val_interval=iters)
    cfg.default_hooks.checkpoint.interval = iters
    cfg.train_dataloader.batch_size = 4
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
        dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=3, end=iters)]
    runner = train(cfg)
    assert type(runner.model.backbone).__name__ == 'UniRepLKNet'
    groups = runner.optim_wrapper.optimizer.param_groups
    assert len({round(g['lr_scale'], 6) for g in groups}) == 6  # layer ids 0..3, 4, 5
    losses = _losses(runner)
    assert len(losses) == iters and np.isfinite(losses).all()
    assert losses[-3:].mean() < losses[:3].mean()
    assert (tmp_path / 'work' / f'iter_{iters}.pth').is_file()
    assert 0 <= runner.message_hub.get_scalar('val/mIoU').current() <= 100


def test_tiny_unireplknet_cascade_mask_rcnn_trains_on_the_demo_data(tmp_path):
    files = generate_demo_coco(tmp_path / 'demo_coco', num_train=8, num_val=2, seed=1)
    cfg = Config.fromfile(DEMO / 'cascade_mask_rcnn_unireplknet_tiny_demo.py')
    _point_at(cfg, files.root, tmp_path / 'work')
    cfg.val_evaluator.ann_file = str(files.root / 'annotations' / 'instances_val2017.json')
    cfg.test_evaluator = cfg.val_evaluator
    epochs = 3
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.checkpoint.interval = epochs
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=2)]
    # The weight EMA of the authors' 22K detectors, from their config.
    cfg.custom_hooks = Config.fromfile(DEMO.parent / 'cascade_mask_rcnn_unireplknet_s_22k_coco.py'
                                       ).custom_hooks
    runner = train(cfg)
    assert type(runner.model.backbone).__name__ == 'UniRepLKNet'
    losses = _losses(runner)
    assert len(losses) == epochs * 2 and np.isfinite(losses).all()  # 8 images, 4 per batch
    assert losses[-2:].mean() < losses[:2].mean()
    # (Validation ran too; after 6 iterations the detector may find nothing to score yet.)
    checkpoint = torch.load(tmp_path / 'work' / f'epoch_{epochs}.pth', weights_only=False)
    # mmengine's EMAHook saves the average as the checkpoint's model and the raw weights (what
    # the runner's model holds) beside it; early in training the two are close, not equal.
    key = 'backbone.stages.2.0.dwconv.lk_origin.weight'
    raw = runner.model.state_dict()[key]
    assert torch.equal(checkpoint['ema_state_dict']['module.' + key], raw)
    averaged = checkpoint['state_dict'][key]
    assert not torch.equal(averaged, raw) and torch.allclose(averaged, raw, atol=1e-2)

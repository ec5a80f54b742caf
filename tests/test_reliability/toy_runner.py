"""A toy mmengine training run for the engine tests: small, fast, and random in both streams.

The toy model has dropout (torch stream) and its dataset draws augmentation noise from NumPy and
``random`` in the main process (data stream), so both streams matter for an exact resume.
"""
import itertools
import random

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

_RUN_IDS = itertools.count()


def next_experiment_name() -> str:
    # mmengine keeps loggers and message hubs by name: every Runner of a test process needs its own.
    return f'toy_{next(_RUN_IDS)}'


class ToyModel(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))

    def forward(self, inputs, targets, mode='tensor'):
        out = self.net(inputs)
        if mode == 'loss':
            return dict(loss=torch.nn.functional.mse_loss(out, targets))
        return [dict(pred=p, target=t) for p, t in zip(out, targets)]


class NoisyDataset(Dataset):
    """Augments with the global NumPy and Python generators, like mmcv transforms do."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict:
        x = np.linspace(-1, 1, 4) * (index + 1) / 10 + np.random.normal(0, 0.1, 4)
        x = x * random.uniform(0.9, 1.1)
        return dict(inputs=torch.tensor(x, dtype=torch.float32),
                    targets=torch.tensor([x.sum()], dtype=torch.float32))


class ToyMetric(BaseMetric):

    def process(self, data_batch, data_samples) -> None:
        self.results += [float((s['pred'] - s['target']).abs()) for s in data_samples]

    def compute_metrics(self, results) -> dict:
        return dict(mae=float(np.mean(results)))


class SimulatedCrash(RuntimeError):
    pass


class CrashAfterIter(Hook):
    """Raises after iteration ``at`` finished (and after its checkpoint, if one was due)."""
    priority = 'LOWEST'

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at:
            raise SimulatedCrash(f'simulated crash after iteration {self.at}')


def toy_loader(num_workers: int, shuffle: bool, infinite: bool = True) -> dict:
    return dict(dataset=NoisyDataset(), batch_size=3, num_workers=num_workers,
                persistent_workers=num_workers > 0,
                sampler=dict(type='InfiniteSampler' if infinite else 'DefaultSampler',
                             shuffle=shuffle),
                collate_fn=dict(type='default_collate'))


def run_toy(work_dir, *, max_iters=9, crash_at=None, resume=False, load_from=None,
            num_workers=0, save_rng_state=True, max_keep_ckpts=-1, by_epoch=False) -> Runner:
    """Iteration-based: checkpoints every 3 of ``max_iters`` iterations. Epoch-based: 3 epochs
    of 4 iterations, a checkpoint after each."""
    checkpoint = dict(type='CrashSafeCheckpointHook', by_epoch=by_epoch,
                      interval=1 if by_epoch else 3, max_keep_ckpts=max_keep_ckpts,
                      save_rng_state=save_rng_state)
    train_cfg = (dict(by_epoch=True, max_epochs=3, val_interval=1) if by_epoch else
                 dict(by_epoch=False, max_iters=max_iters, val_interval=3))
    torch.manual_seed(0)  # the model is built before the Runner seeds anything
    runner = Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=next_experiment_name(),
        train_dataloader=toy_loader(num_workers, shuffle=True, infinite=not by_epoch),
        train_cfg=train_cfg,
        val_dataloader=toy_loader(0, shuffle=False, infinite=False),
        val_cfg=dict(),
        val_evaluator=[ToyMetric()],
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=checkpoint, logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[CrashAfterIter(crash_at)] if crash_at else None,
        randomness=dict(seed=0, deterministic=True),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine')
    if crash_at:
        with pytest.raises(SimulatedCrash):
            runner.train()
    else:
        runner.train()
    return runner


def weights(runner: Runner) -> dict:
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}

"""A toy mmengine training run for the engine tests: small, fast, and random in both streams.

The toy model has dropout (torch stream) and its dataset draws augmentation noise from NumPy and
``random`` in the main process (data stream), so both streams matter for an exact resume.
"""
import itertools
import os
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
    """``poisoned`` adds a logged loss term of NaN that carries no gradient: the total loss is
    NaN while the weights stay finite, as when AMP's loss scaler skips an overflowing step."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.5), torch.nn.Linear(width, 1))
        self.poisoned = False

    def forward(self, inputs, targets, mode='tensor'):
        out = self.net(inputs)
        if mode == 'loss':
            losses = dict(loss=torch.nn.functional.mse_loss(out, targets))
            if self.poisoned:
                losses['loss_poison'] = torch.tensor(float('nan'))
            return losses
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


class SignalAt(Hook):
    """Sends ``signums`` to this process while iteration ``at`` runs (as a scheduler would)."""
    priority = 'HIGHEST'

    def __init__(self, at: int, *signums: int) -> None:
        self.at = at
        self.signums = signums

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 == self.at:
            for signum in self.signums:
                os.kill(os.getpid(), signum)


class PoisonAt(Hook):
    """From iteration ``at`` on (for ``count`` iterations), makes the loss (``what='loss'``) or,
    after the step, the weights (``what='weights'``) non-finite."""
    priority = 'HIGHEST'

    def __init__(self, at: int, what: str = 'loss', count: int = 10**9) -> None:
        self.at, self.what, self.count = at, what, count

    def _active(self, runner) -> bool:
        return self.at <= runner.iter + 1 < self.at + self.count

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.what == 'loss':
            _bare(runner.model).poisoned = self._active(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.what == 'weights' and self._active(runner):
            with torch.no_grad():
                _bare(runner.model).net[0].weight[0, 0] = float('inf')


def _bare(model):
    return getattr(model, 'module', model)


def toy_loader(num_workers: int, shuffle: bool, infinite: bool = True) -> dict:
    return dict(dataset=NoisyDataset(), batch_size=3, num_workers=num_workers,
                persistent_workers=num_workers > 0,
                sampler=dict(type='InfiniteSampler' if infinite else 'DefaultSampler',
                             shuffle=shuffle),
                collate_fn=dict(type='default_collate'))


def run_toy(work_dir, *, max_iters=9, crash_at=None, resume=False, load_from=None,
            num_workers=0, save_rng_state=True, max_keep_ckpts=-1, by_epoch=False,
            hooks=(), raises=None, width=16, **checkpoint_args) -> Runner:
    """Iteration-based: checkpoints every 3 of ``max_iters`` iterations. Epoch-based: 3 epochs
    of 4 iterations, a checkpoint after each. ``raises``: the exception training must end with
    (then found as ``runner.raised``); ``hooks``: more custom hooks."""
    checkpoint = dict(type='CrashSafeCheckpointHook', by_epoch=by_epoch,
                      interval=1 if by_epoch else 3, max_keep_ckpts=max_keep_ckpts,
                      save_rng_state=save_rng_state, **checkpoint_args)
    train_cfg = (dict(by_epoch=True, max_epochs=3, val_interval=1) if by_epoch else
                 dict(by_epoch=False, max_iters=max_iters, val_interval=3))
    torch.manual_seed(0)  # the model is built before the Runner seeds anything
    runner = Runner(
        model=ToyModel(width),
        work_dir=str(work_dir),
        experiment_name=next_experiment_name(),
        train_dataloader=toy_loader(num_workers, shuffle=True, infinite=not by_epoch),
        train_cfg=train_cfg,
        val_dataloader=toy_loader(0, shuffle=False, infinite=False),
        val_cfg=dict(),
        val_evaluator=[ToyMetric()],
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=checkpoint, logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[*([CrashAfterIter(crash_at)] if crash_at else []), *hooks] or None,
        randomness=dict(seed=0, deterministic=True),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine')
    raises = raises or (SimulatedCrash if crash_at else None)
    if raises:
        with pytest.raises(raises) as raised:
            try:
                runner.train()
            finally:
                # What mmreplk.apis.train does: after_train is skipped on an exception.
                _release(runner)
        runner.raised = raised.value
    else:
        runner.train()
    return runner


def _release(runner: Runner) -> None:
    for hook in runner.hooks:
        if hasattr(hook, 'release_signals'):
            hook.release_signals()


def weights(runner: Runner) -> dict:
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}

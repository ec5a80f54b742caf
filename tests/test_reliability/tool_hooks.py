"""Hooks that the tool-level tests (test_training.py) put into their configs."""
import os
import os.path as osp
import time

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankWeightsHook(Hook):
    """Writes every rank's process id when training starts, and its weights when training ends
    (checkpoints only hold rank 0's)."""
    priority = 'LOWEST'

    def before_train(self, runner):
        with open(osp.join(runner.work_dir, f'rank{get_rank()}.pid'), 'w') as f:
            f.write(str(os.getpid()))

    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(model.state_dict(), osp.join(runner.work_dir, f'rank{get_rank()}.pth'))


@HOOKS.register_module()
class PauseHook(Hook):
    """With ``PAUSE_AT=N`` in the environment, every rank writes ``paused<rank>`` (its process
    id) into the work dir when iteration N starts, and waits there until the file ``go``
    appears: a test sends its signal to a run at a known point, without racing the clock."""
    priority = 'HIGHEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 != int(os.environ.get('PAUSE_AT', 0)):
            return
        with open(osp.join(runner.work_dir, f'paused{get_rank()}'), 'w') as f:
            f.write(str(os.getpid()))
        while not osp.exists(osp.join(runner.work_dir, 'go')):
            time.sleep(0.01)

"""The private upstream internals mmreplk relies on, each reached from one small function: these
tests fail, naming the internal, when an mmengine or mmdet upgrade moves it."""
import inspect
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook

from mmreplk.tasks import build_model, input_normalization
from mmreplk.tasks.detection import roi_stage_outputs

CONFIGS = Path(__file__).parents[1] / 'data' / 'configs'


def test_input_normalization_reads_the_preprocessors(tmp_path):
    for config in ('tiny_upernet_replknet.py', 'tiny_cascade_replknet.py'):
        cfg = Config.fromfile(str(CONFIGS / config))
        preprocessor = build_model(cfg).data_preprocessor
        normalization = input_normalization(preprocessor)
        expected = cfg.model.data_preprocessor
        assert normalization.bgr_to_rgb == expected.get('bgr_to_rgb', False), config
        torch.testing.assert_close(normalization.mean.flatten(),
                                   torch.tensor(expected.mean, dtype=torch.float32))
        torch.testing.assert_close(normalization.std.flatten(),
                                   torch.tensor(expected.std, dtype=torch.float32))


def test_roi_head_stage_forwards_exist_with_the_called_signature():
    from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
    for head, stage_arg in ((StandardRoIHead, []), (CascadeRoIHead, ['stage'])):
        for name in ('_bbox_forward', '_mask_forward'):
            params = list(inspect.signature(getattr(head, name)).parameters)
            assert params[1:1 + len(stage_arg) + 2] == stage_arg + ['x', 'rois'], (head, name)
    assert callable(roi_stage_outputs)


def test_checkpoint_hook_saves_through_the_overridden_step():
    """CrashSafeCheckpointHook overrides ``_save_checkpoint_with_step``: mmengine must still save
    every checkpoint through it, with (runner, step, meta)."""
    params = list(inspect.signature(CheckpointHook._save_checkpoint_with_step).parameters)
    assert params == ['self', 'runner', 'step', 'meta']
    assert '_save_checkpoint_with_step(' in inspect.getsource(CheckpointHook._save_checkpoint)

"""tools/test.py evaluates only what it loaded: a checkpoint that does not cover the model, or a
folded (deploy-form) one for the training-form model, stops with one message."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmreplk.engine import check_state_dict_covers
from mmreplk.utils import load_checkpoint_file
from mmreplk.deployment.reparam import reparameterize_checkpoint
from mmreplk.utils import CheckpointMismatchError, ToolError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'


@pytest.fixture(scope='module')
def model_and_checkpoint(tmp_path_factory):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    path = tmp_path_factory.mktemp('ckpt') / 'iter_1.pth'
    torch.save(dict(meta=dict(iter=1), state_dict=model.state_dict()), path)
    return model, path


def check_checkpoint_covers(model, path: str) -> float:
    return check_state_dict_covers(model, load_checkpoint_file(path), path)


def test_a_checkpoint_of_the_model_covers_it(model_and_checkpoint):
    model, path = model_and_checkpoint
    assert check_checkpoint_covers(model, str(path)) == 1.0


def test_a_foreign_checkpoint_is_refused_with_the_share_loaded(model_and_checkpoint, tmp_path):
    model, path = model_and_checkpoint
    state = torch.load(path, weights_only=True)['state_dict']
    partial = {key: value for key, value in state.items() if key.startswith('backbone.')}
    foreign = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict={'classifier.weight': torch.ones(3)}), foreign)
    half = tmp_path / 'backbone_only.pth'
    torch.save(dict(state_dict=partial), half)

    with pytest.raises(ToolError, match=rf'^{foreign} covers 0% of the model\'s tensors \(0 of '):
        check_checkpoint_covers(model, str(foreign))
    with pytest.raises(ToolError) as error:
        check_checkpoint_covers(model, str(half))
    share = len(partial) / len(model.state_dict())
    assert f'covers {share:.0%} of the model\'s tensors ({len(partial)} of ' in str(error.value)
    assert 'Not loaded: decode_head.' in str(error.value)


def test_a_folded_checkpoint_stops_with_the_message_infer_gives(model_and_checkpoint, tmp_path):
    model, path = model_and_checkpoint
    folded = tmp_path / 'folded.pth'
    reparameterize_checkpoint(DEMO, path, folded)
    with pytest.raises(CheckpointMismatchError, match='build it with deploy=True'):
        check_checkpoint_covers(model, str(folded))


@pytest.mark.slow
def test_the_test_tool_stops_on_a_foreign_checkpoint(tmp_path):
    foreign = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict={'classifier.weight': torch.ones(3)}), foreign)
    from mmreplk.datasets import generate_demo_dataset
    root = generate_demo_dataset(tmp_path / 'data', num_train=2, num_val=2, size=32)
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', str(DEMO), str(foreign), '--work-dir', str(tmp_path),
         '--cfg-options', f'test_dataloader.dataset.data_root={root}'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={'PYTHONPATH': str(REPO_ROOT), 'OMP_NUM_THREADS': '1', 'PATH': ''})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert f'CheckpointCoverageError: {foreign} covers 0% of the model' in output
    assert not re.search(r'mIoU: [0-9]', output) and 'Traceback' not in output

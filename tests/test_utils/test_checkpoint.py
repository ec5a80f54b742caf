import os

import pytest
import torch
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint

from mmreplk.utils import UntrustedCheckpointError, load_checkpoint_file, trusted_checkpoints


class _PlantedPayload:
    """Unpickling this creates a directory: stands in for arbitrary code in a hostile file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


@pytest.fixture
def hostile_checkpoint(tmp_path):
    target = tmp_path / 'pwned'
    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': _PlantedPayload(target)}, path)
    return path, target


def test_hostile_checkpoint_is_refused_and_runs_nothing(hostile_checkpoint):
    path, target = hostile_checkpoint
    with pytest.raises(UntrustedCheckpointError, match='hostile.pth.*--trust-checkpoint'):
        load_checkpoint_file(path)
    assert not target.exists()


def test_mmengine_loaders_use_the_policy(hostile_checkpoint):
    path, target = hostile_checkpoint
    model = torch.nn.Linear(1, 1)
    with pytest.raises(UntrustedCheckpointError):
        mmengine_load_checkpoint(model, str(path))
    assert not target.exists()


def test_explicit_trust_opt_in(hostile_checkpoint):
    path, target = hostile_checkpoint
    with trusted_checkpoints():
        load_checkpoint_file(path)
    assert target.is_dir()
    with pytest.raises(UntrustedCheckpointError):  # the opt-in does not outlive its context
        load_checkpoint_file(path)


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    """A checkpoint written by mmengine's Runner (message hub, numpy scalars) loads safely."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            out = self.linear(inputs)
            return dict(loss=out.square().mean()) if mode == 'loss' else out

    data = [dict(inputs=torch.randn(2)) for _ in range(8)]
    runner = Runner(model=Toy(), work_dir=str(tmp_path),
                    train_dataloader=dict(dataset=data, batch_size=2, sampler=dict(type='DefaultSampler', shuffle=False),
                                          collate_fn=dict(type='default_collate')),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                    train_cfg=dict(by_epoch=False, max_iters=4, val_interval=100),
                    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
                    default_scope='mmengine')
    runner.train()
    checkpoint = load_checkpoint_file(tmp_path / 'iter_4.pth')
    assert checkpoint['meta']['iter'] == 4
    assert 'message_hub' in checkpoint and 'optimizer' in checkpoint


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file(tmp_path / 'nope.pth')


def test_safetensors_file_loads(tmp_path):
    safetensors = pytest.importorskip('safetensors.torch', reason='safetensors is not installed')
    path = tmp_path / 'weights.safetensors'
    safetensors.save_file({'stem.0.conv.weight': torch.ones(2, 3)}, str(path))
    torch.testing.assert_close(load_checkpoint_file(path)['stem.0.conv.weight'], torch.ones(2, 3))

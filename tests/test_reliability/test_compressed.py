"""A checkpoint with a compressed (deflated) record is refused by every loader before anything
is inflated: a few hundred kB of zeros on disk would otherwise become the record's full size in
memory inside ``torch.load``."""
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from mmengine.config import Config
from mmengine.runner.checkpoint import load_checkpoint

from mmreplk.engine import CheckpointResumeError, checkpoint_damage, resolve_resume
from mmreplk.utils import load_checkpoint_file, read_state_dict
from mmreplk.utils.checkpoint import CompressedCheckpointError
from mmreplk.models.backbones.replknet_weights import load_backbone_weights

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bomb(path: Path, megabytes: int) -> Path:
    """A torch checkpoint of one zero tensor of ``megabytes`` MB, re-zipped with deflate."""
    plain = path.with_suffix('.plain')
    torch.save(dict(meta=dict(iter=1), state_dict={'w': torch.zeros(megabytes * 2**18)}), plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, 'w') as target:
        for info in source.infolist():
            compress = zipfile.ZIP_DEFLATED if '/data/' in info.filename else zipfile.ZIP_STORED
            target.writestr(info.filename, source.read(info), compress_type=compress)
    plain.unlink()
    return path


@pytest.fixture(scope='module')
def bomb(tmp_path_factory) -> Path:
    return _bomb(tmp_path_factory.mktemp('bomb') / 'iter_1.pth', megabytes=128)


def test_the_bomb_is_small_on_disk_and_large_inside(bomb):
    assert bomb.stat().st_size < 2**20
    assert zipfile.ZipFile(bomb).getinfo('iter_1/data/0').file_size == 128 * 2**20


@pytest.mark.slow
def test_every_loader_refuses_the_bomb_without_inflating_it(bomb):
    # Each loader in a fresh process; its peak memory must not grow by the record's size.
    script = textwrap.dedent(f'''
        import resource, sys
        import torch
        from mmengine.config import Config
        from mmengine.runner.checkpoint import load_checkpoint
        from mmreplk.engine import checkpoint_damage, resolve_resume
        from mmreplk.utils import load_checkpoint_file, read_state_dict
        from mmreplk.models.backbones.replknet_weights import load_backbone_weights
        from mmreplk.engine.resume import CheckpointResumeError
        from mmreplk.utils.checkpoint import CompressedCheckpointError

        path = {str(bomb)!r}
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB
        before = peak()
        loaders = dict(
            load_checkpoint_file=lambda: load_checkpoint_file(path),
            tools_test_and_infer=lambda: read_state_dict(path),
            pretrained_mmengine=lambda: load_checkpoint(torch.nn.Linear(1, 1), path),
            pretrained_backbone=lambda: load_backbone_weights(torch.nn.Linear(1, 1), path),
            resume=lambda: resolve_resume(Config(dict(work_dir='.', resume=True,
                                                      load_from=path))),
        )
        for name, load in loaders.items():
            try:
                load()
            except (CompressedCheckpointError, CheckpointResumeError) as err:
                assert 'compressed' in str(err), (name, str(err))
                print(name, 'refused')
            else:
                sys.exit(name + ' loaded the bomb')
        print('grew_kb', peak() - before)
    ''')
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env={'PYTHONPATH': str(REPO_ROOT),
                                                       'OMP_NUM_THREADS': '1', 'PATH': ''})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count('refused') == 5, proc.stdout
    grew_kb = int(proc.stdout.split('grew_kb')[1])
    assert grew_kb < 48 * 1024, f'peak memory grew by {grew_kb} kB'


@pytest.mark.parametrize('load', [
    load_checkpoint_file,
    read_state_dict,  # tools/test.py's coverage check and tools/infer.py
    lambda path: load_checkpoint(torch.nn.Linear(1, 1), str(path)),  # init_cfg Pretrained
    lambda path: load_backbone_weights(torch.nn.Linear(1, 1), path),  # RepLKNet's Pretrained
])
def test_every_loader_names_the_compressed_record(bomb, load):
    with pytest.raises(CompressedCheckpointError, match='record iter_1/data/0 is compressed'):
        load(bomb)


def test_resume_refuses_the_bomb(bomb):
    assert checkpoint_damage(bomb).startswith('refused: record iter_1/data/0 is compressed')
    with pytest.raises(CheckpointResumeError, match='is compressed'):
        resolve_resume(Config(dict(work_dir=str(bomb.parent), resume=True, load_from=str(bomb))))

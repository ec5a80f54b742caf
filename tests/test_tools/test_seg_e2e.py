"""The tools end to end on the demo config and a tiny generated dataset (subprocesses, CPU)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import free_port

from mmreplk.datasets import generate_demo_dataset

ROOT = Path(__file__).parents[2]
DEMO = ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
ADE_31B = ROOT / 'configs' / 'upernet_replknet31b_ade20k.py'


def _run(*args, cwd=ROOT, env=None, expect_ok=True):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    proc = subprocess.run([*args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=600)
    output = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, (f'stdout ends:\n{proc.stdout[-2500:]}\n'
                                      f'stderr ends:\n{proc.stderr[-2500:]}')
    return proc.returncode, output


def _tool(name, *args, **kwargs):
    return _run(sys.executable, str(ROOT / 'tools' / f'{name}.py'), *args, **kwargs)


def _loader_options(root, splits=('train', 'val', 'test')):
    options = []
    for split in splits:
        options += [f'{split}_dataloader.dataset.data_root={root}',
                    f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
    return options


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp('data') / 'demo_ade', num_train=8,
                                 num_val=3, size=64, seed=2)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_data):
    """Trains 2 iterations, then resumes to 4; returns (work_dir, resume output)."""
    work = tmp_path_factory.mktemp('work')
    common = ['--work-dir', str(work), '--cfg-options', *_loader_options(tiny_data),
              'train_dataloader.batch_size=2', 'train_cfg.val_interval=4',
              'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=3',
              'default_hooks.logger.interval=1']
    _tool('train', str(DEMO), *common[:3], 'train_cfg.max_iters=2', *common[3:])
    assert (work / 'iter_2.pth').is_file()
    _, resumed = _tool('train', str(DEMO), '--resume', *common[:3], 'train_cfg.max_iters=4',
                       *common[3:])
    return work, resumed


def test_train_saves_and_resume_continues(trained):
    work, output = trained
    assert 'resumed' in output.lower() and 'iter_2.pth' in output
    assert (work / 'iter_4.pth').is_file()
    assert 'Iter(train) [3/4]' in output and 'Iter(train) [1/4]' not in output
    assert 'mIoU' in output  # validation at iteration 4


def test_training_curves_join_the_run_and_its_resume(trained, tmp_path):
    """tools/analysis/plot_curves.py on the real logs of a run (iterations 1-2) and its resume (3-4)."""
    work, _ = trained
    _, output = _tool('analysis/plot_curves', str(work), '--out', str(tmp_path / 'curves.png'))
    assert 'loss, aAcc, mIoU, mAcc over 2 run(s)' in output
    assert cv2.imread(str(tmp_path / 'curves.png')) is not None
    from mmreplk.analysis import load_training_curves
    curves = load_training_curves(work)
    assert curves.points('loss')[0] == [1, 2, 3, 4]
    # Each run validates at its last iteration (2, then 4).
    assert curves.points('mIoU')[0] == [2, 4]


def test_test_tool_reports_miou_with_tta_out_and_show_dir(trained, tiny_data, tmp_path):
    work, _ = trained
    _, output = _tool('test', str(DEMO), str(work / 'iter_4.pth'), '--work-dir', str(tmp_path),
                      '--tta', '--out', str(tmp_path / 'preds'), '--show-dir', str(tmp_path / 'vis'),
                      '--cfg-options', *_loader_options(tiny_data))
    miou = re.findall(r'mIoU: ([0-9.]+)', output)
    assert miou and 0 <= float(miou[-1]) <= 100
    assert len(list((tmp_path / 'preds').glob('*.png'))) == 3
    assert len(list((tmp_path / 'vis').rglob('*.png'))) == 3


def test_infer_tool_on_folder_with_bad_files(trained, tiny_data, tmp_path):
    work, _ = trained
    src = tmp_path / 'in'
    shutil.copytree(tiny_data / 'images' / 'validation', src / 'nested')
    cv2.imwrite(str(src / 'wide.png'), np.full((40, 90), 128, np.uint8))  # grayscale, odd size
    (src / 'corrupt.jpg').write_bytes((src / 'nested' / 'demo_00000.jpg').read_bytes()[:300])
    (src / 'notes.txt').write_text('not an image')
    out = tmp_path / 'out'

    _, output = _tool('infer', str(DEMO), str(work / 'iter_4.pth'), str(src), '--out-dir', str(out),
                      '--batch-size', '2')

    assert 'corrupt.jpg' in output and 'truncated' in output
    assert 'notes.txt' in output and 'not an image' in output
    assert '4 images processed, 8 files written' in output and '2 skipped' in output
    for image_path in [src / 'wide.png', *sorted((src / 'nested').glob('*.jpg'))]:
        stem = out / image_path.relative_to(src).with_suffix('')
        image = cv2.imread(str(image_path))
        overlay = cv2.imread(f'{stem}_overlay.png')
        labels = cv2.imread(f'{stem}_label.png', cv2.IMREAD_UNCHANGED)
        assert overlay.shape == image.shape and labels.shape == image.shape[:2]
        assert labels.max() < 5
    assert not list(out.rglob('corrupt*')) and not list(out.rglob('notes*'))


def test_paper_config_without_ade20k_stops_with_layout_message(tmp_path):
    code, output = _tool('train', str(ADE_31B), cwd=tmp_path, expect_ok=False)
    assert code != 0
    assert 'data/ade/ADEChallengeData2016 does not exist' in output
    assert 'images/training/*.jpg' in output and 'ADEChallengeData2016.zip' in output
    assert 'Traceback' not in output


def test_paper_config_starts_training_on_tiny_ade_layout(tmp_path, tiny_data):
    arch = ['model.backbone.arch._delete_=True', 'model.backbone.arch.large_kernel_sizes=[13,11,9,7]',
            'model.backbone.arch.layers=[1,1,1,1]',
            'model.backbone.arch.channels=[8,16,24,32]', 'model.backbone.arch.small_kernel=5',
            'model.backbone.arch.dw_ratio=1', 'model.backbone.arch.ffn_ratio=1',
            'model.decode_head.in_channels=[8,16,24,32]', 'model.decode_head.channels=16',
            'model.auxiliary_head.in_channels=24', 'model.auxiliary_head.channels=8']
    _, output = _tool('train', str(ADE_31B), '--work-dir', str(tmp_path), '--cfg-options',
                      *_loader_options(tiny_data, ('train', 'val')), *arch,
                      'train_cfg.max_iters=1', 'train_dataloader.batch_size=2')
    assert 'No pretrained backbone weights set' in output
    assert (tmp_path / 'iter_1.pth').is_file()


@pytest.mark.slow
def test_two_process_gloo_training_on_cpu(tmp_path, tiny_data):
    # A rank that aborts prints where it was (mid-run or at interpreter shutdown).
    env = dict(PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1',
               PYTHONFAULTHANDLER='1')
    _, output = _run('bash', str(ROOT / 'tools' / 'dist_train.sh'), str(DEMO), '2', '--work-dir',
                     str(tmp_path), '--cfg-options', *_loader_options(tiny_data),
                     'train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
                     'train_cfg.val_interval=2', 'default_hooks.logger.interval=1', env=env)
    assert 'CPU distributed run' in output and 'Distributed training: True' in output
    assert (tmp_path / 'iter_2.pth').is_file() and 'mIoU' in output
    # Gradients laid out like their parameters: DDP neither copies nor warns.
    assert 'Grad strides do not match' not in output


@pytest.mark.slow
def test_demo_run_learns_every_class(tmp_path):
    """The README's demo run: the demo config on the default generated data (minutes of CPU)."""
    from mmreplk.datasets import majority_class_miou
    data = generate_demo_dataset(tmp_path / 'demo_ade')
    _, output = _tool('train', str(DEMO), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                      *_loader_options(data), env=dict(OMP_NUM_THREADS='1'))
    table = dict(re.findall(r'^\|\s*(\w+)\s*\|\s*([0-9.]+)\s*\|', output, flags=re.MULTILINE))
    assert set(table) == {'sky', 'ground', 'disc', 'square', 'triangle'}, output[-3000:]
    assert min(float(iou) for iou in table.values()) > 30, table
    miou = float(re.findall(r'mIoU: ([0-9.]+)', output)[-1])
    assert miou > 5 * majority_class_miou(data / 'annotations' / 'validation'), miou

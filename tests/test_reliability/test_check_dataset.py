"""tools/check_dataset.py on the demo data with planted faults lists exactly them."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import load_tool
from PIL import Image

from mmreplk.datasets import generate_demo_coco, generate_demo_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
SEG_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
DET_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'cascade_mask_rcnn_replknet_tiny_demo.py'


@pytest.fixture(scope='module')
def tool():
    return load_tool('check_dataset.py')


def _run(tool, capsys, config, *args):
    status = tool.main([str(config), '--workers', '2', *args])
    return status, capsys.readouterr().out


def test_seg_demo_lists_exactly_the_planted_faults(tool, capsys, tmp_path):
    root = generate_demo_dataset(tmp_path / 'demo_ade', num_train=12, num_val=4, size=32)
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
               f'val_dataloader.dataset.data_root={root}',
               f'test_dataloader.dataset.data_root={root}']
    status, out = _run(tool, capsys, SEG_CONFIG, *options)
    assert status == 0, out
    assert 'train (ReplkShapesDataset' in out and '12 samples, no problems' in out
    assert 'val/test (ReplkShapesDataset' in out and '4 samples, no problems' in out

    images, labels = root / 'images', root / 'annotations'
    (images / 'training' / 'demo_00002.jpg').write_bytes(os.urandom(500))
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(labels / 'training' / 'demo_00004.png')
    out_of_class = np.asarray(Image.open(labels / 'validation' / 'demo_00001.png')).copy()
    out_of_class[0, :3] = [7, 9, 255]  # 7 and 9 are no class (5 classes); 255 is "ignore"
    Image.fromarray(out_of_class).save(labels / 'validation' / 'demo_00001.png')

    status, out = _run(tool, capsys, SEG_CONFIG, *options)
    assert status == 1
    problems = [line.strip() for line in out.splitlines() if line.startswith('  ')]
    assert len(problems) == 3, out
    # By dataset (train, then val/test), then by file.
    assert problems[0] == (f'mis-sized  {labels}/training/demo_00004.png: 32x16 label map for '
                           f'a 32x32 image {images}/training/demo_00004.jpg')
    assert problems[1].startswith(f'unreadable {images}/training/demo_00002.jpg')
    assert problems[2] == (f'labels     {labels}/validation/demo_00001.png: values 7, 9 '
                           f'outside 0-5 and 255 (5 classes, reduce_zero_label)')


def test_det_demo_lists_exactly_the_planted_faults(tool, capsys, tmp_path):
    files = generate_demo_coco(tmp_path / 'demo_coco', num_train=8, num_val=3,
                               image_size=(48, 64))
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={files.root}/',
               f'val_dataloader.dataset.data_root={files.root}/',
               f'test_dataloader.dataset.data_root={files.root}/']
    status, out = _run(tool, capsys, DET_CONFIG, *options)
    assert status == 0, out

    coco = json.loads(files.train_ann.read_text())
    names = {image['id']: image['file_name'] for image in coco['images']}
    first, second = coco['annotations'][0], coco['annotations'][-1]
    first['category_id'] = 99
    second['bbox'] = [50, 40, 30, 20]
    coco['images'][1]['height'] = 50
    files.train_ann.write_text(json.dumps(coco))
    broken = files.train_dir / coco['images'][2]['file_name']
    broken.write_bytes(b'\x89PNG not really')

    status, out = _run(tool, capsys, DET_CONFIG, *options)
    assert status == 1
    problems = [line.strip() for line in out.splitlines() if line.startswith('  ')]
    expected = {
        ('labels', names[first['image_id']], f'annotation {first["id"]} has category_id 99'),
        ('mis-sized', names[second['image_id']], f'annotation {second["id"]}: box [50, 40, 30, '
                                                 f'20] (x, y, w, h) outside the 64x48 image'),
        ('mis-sized', coco['images'][1]['file_name'], '64x48 image, 64x50 in'),
        ('unreadable', broken.name, 'not a decodable image'),
    }
    assert len(problems) == len(expected), out
    for kind, name, detail in expected:
        assert any(p.startswith(kind) and f'{name}: ' in p and detail in p for p in problems), \
            (kind, name, detail, out)

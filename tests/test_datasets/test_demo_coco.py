import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmreplk.datasets.demo_coco import DEMO_COCO_CLASSES, generate_demo_coco

# Polygon vertices per class: the class is the shape.
VERTICES = {'square': 4, 'disc': 32, 'triangle': 3}


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_coco(tmp_path_factory.mktemp('demo_coco'), num_train=12, num_val=4,
                              image_size=(96, 112), seed=3)


def test_layout_is_coco_2017(demo):
    assert demo.train_ann == demo.root / 'annotations' / 'instances_train2017.json'
    assert demo.val_ann == demo.root / 'annotations' / 'instances_val2017.json'
    assert len(list(demo.train_dir.glob('*.png'))) == 12
    assert len(list(demo.val_dir.glob('*.png'))) == 4


@pytest.mark.parametrize('split', ['train', 'val'])
def test_annotations_agree_with_pixels(demo, split):
    coco = COCO(str(getattr(demo, f'{split}_ann')))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(DEMO_COCO_CLASSES)
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        image = cv2.imread(str(getattr(demo, f'{split}_dir') / info['file_name']))
        assert image.shape == (info['height'], info['width'], 3) == (96, 112, 3)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert anns, 'every image holds at least one object'
        union = np.zeros(image.shape[:2], np.int32)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            union += mask
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann['bbox']
            assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
            assert ann['area'] == mask.sum() > 0
            name = coco.loadCats(ann['category_id'])[0]['name']
            assert len(ann['segmentation'][0]) == 2 * VERTICES[name]
        assert union.max() == 1, 'objects must not overlap'


def test_colour_does_not_give_the_class_away(tmp_path):
    files = generate_demo_coco(tmp_path, num_train=60, num_val=1, seed=0)
    coco = COCO(str(files.train_ann))
    brightness = {name: [] for name in DEMO_COCO_CLASSES}
    for image_id in coco.getImgIds():
        image = cv2.imread(str(files.train_dir / coco.loadImgs(image_id)[0]['file_name']))
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            mask = coco.annToMask(ann).astype(bool)
            brightness[coco.loadCats(ann['category_id'])[0]['name']].append(image[mask].mean())
    for name, values in brightness.items():
        assert len(values) >= 10, name
        # Each class spans dark and bright objects alike.
        assert min(values) < 100 and max(values) > 150, (name, min(values), max(values))


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kwargs = dict(num_train=3, num_val=2)
    first = generate_demo_coco(tmp_path / 'a', seed=5, **kwargs)
    second = generate_demo_coco(tmp_path / 'b', seed=5, **kwargs)
    other = generate_demo_coco(tmp_path / 'c', seed=6, **kwargs)
    for rel in ['annotations/instances_train2017.json', 'annotations/instances_val2017.json',
                'train2017/000001.png', 'val2017/000002.png']:
        assert (first.root / rel).read_bytes() == (second.root / rel).read_bytes(), rel
    assert first.train_ann.read_bytes() != other.train_ann.read_bytes()
    # The two splits are different images.
    assert json.loads(first.train_ann.read_text())['annotations'][0]['bbox'] != \
        json.loads(first.val_ann.read_text())['annotations'][0]['bbox']


@pytest.mark.parametrize('kwargs', [dict(num_train=0), dict(max_objects=0),
                                    dict(size_range=(0.5, 0.3))])
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_demo_coco(tmp_path, **kwargs)

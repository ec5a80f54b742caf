import hashlib

import cv2
import numpy as np
import pytest

from mmreplk.datasets import DEMO_CLASSES, generate_demo_dataset, majority_class_miou, make_sample

SPLITS = ('training', 'validation')


def _digest(root):
    files = sorted(p for p in root.rglob('*') if p.is_file() and p.name.startswith('demo_'))
    return [(str(p.relative_to(root)), hashlib.sha1(p.read_bytes()).hexdigest()) for p in files]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp('demo') / 'ade', num_train=6, num_val=3,
                                 size=64, seed=1)


def test_ade20k_layout(demo):
    for split, count in zip(SPLITS, (6, 3)):
        images = sorted(p.stem for p in (demo / 'images' / split).glob('*.jpg'))
        labels = sorted(p.stem for p in (demo / 'annotations' / split).glob('*.png'))
        assert len(images) == count and images == labels
        image = cv2.imread(str(demo / 'images' / split / f'{images[0]}.jpg'))
        label = cv2.imread(str(demo / 'annotations' / split / f'{labels[0]}.png'),
                           cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 64, 3) and label.shape == (64, 64) and label.dtype == np.uint8


def test_labels_follow_ade_convention(demo):
    values = set()
    for path in (demo / 'annotations').rglob('*.png'):
        values |= set(np.unique(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)).tolist())
    # 0 = unlabelled rings around objects, 1..5 = classes; no other value.
    assert 0 in values and {1, 2} <= values and values <= set(range(len(DEMO_CLASSES) + 1))


def test_same_seed_same_files_and_regeneration_is_clean(tmp_path):
    first = _digest(generate_demo_dataset(tmp_path / 'a', num_train=4, num_val=2, size=48, seed=5))
    again = _digest(generate_demo_dataset(tmp_path / 'b', num_train=4, num_val=2, size=48, seed=5))
    other = _digest(generate_demo_dataset(tmp_path / 'c', num_train=4, num_val=2, size=48, seed=6))
    assert first == again and first != other
    # Re-running into the same folder with fewer images leaves no stale file behind.
    _digest(generate_demo_dataset(tmp_path / 'a', num_train=2, num_val=1, size=48, seed=5))
    assert len(list((tmp_path / 'a' / 'images' / 'training').iterdir())) == 2
    assert len(list((tmp_path / 'a' / 'annotations' / 'validation').iterdir())) == 1


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / 'mine.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not written by the demo generator'):
        generate_demo_dataset(tmp_path, num_train=1, num_val=1, size=32)
    assert (tmp_path / 'mine.txt').read_text() == 'keep me'


def test_colour_does_not_give_the_label_away():
    rng = np.random.default_rng(0)
    means = {label: [] for label in range(1, len(DEMO_CLASSES) + 1)}
    for _ in range(40):
        image, labels = make_sample(rng, size=64)
        for label in np.unique(labels[labels > 0]):
            means[label].append(image[labels == label].mean(axis=0))
    for label, colours in means.items():
        assert len(colours) >= 5, DEMO_CLASSES[label - 1]
        # Each class's mean colour varies across images as much as colours in general do.
        assert np.std(colours, axis=0).mean() > 30, DEMO_CLASSES[label - 1]


def test_shape_classes_cover_similar_areas():
    # Triangles drawn with a disc's radius cover 41% of its area and were never learned in the
    # demo's budget; shapes are scaled to equal mean area instead.
    rng = np.random.default_rng(0)
    area = dict.fromkeys(range(3, 6), 0)
    for _ in range(300):
        _, labels = make_sample(rng, size=64)
        for label in area:
            area[label] += int((labels == label).sum())
    assert max(area.values()) / min(area.values()) < 1.25, area


def test_majority_class_miou(tmp_path):
    # Class 1 covers 6 pixels, class 2 covers 2 (label 0 is ignored): predicting class 1
    # everywhere gives IoU 6/8 for it and 0 for class 2, so mIoU = 37.5%.
    labels = np.array([[1, 1, 1, 0], [1, 1, 1, 2], [0, 0, 0, 2]], np.uint8)
    cv2.imwrite(str(tmp_path / 'x.png'), labels)
    assert majority_class_miou(tmp_path, num_classes=5) == pytest.approx(37.5)

"""Detection end to end on the demo config and generated data: train, test, folder inference."""
import argparse
import json
import re
import shutil
from pathlib import Path

import cv2
import mmengine
import numpy as np
import pytest
import torch
from helpers import load_tool
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from pycocotools import mask as mask_utils

from mmreplk import apis
from mmreplk.apis import infer_folder, load_config, merge_test_args, merge_train_args
from mmreplk.tasks.detection import JSON_SUFFIX, VIS_SUFFIX, DetPredictor
from mmreplk.datasets.demo_coco import DEMO_COCO_CLASSES, generate_demo_coco

DEMO_CONFIG = (Path(__file__).parents[2] / 'configs' / 'demo' /
               'cascade_mask_rcnn_replknet_tiny_demo.py')


def demo_options(data_root: Path, **extra) -> dict:
    """--cfg-options pointing the demo config at a generated dataset."""
    root = f'{data_root}/'
    options = {f'{split}_dataloader.dataset.data_root': root for split in ('train', 'val', 'test')}
    for evaluator in ('val_evaluator', 'test_evaluator'):
        options[f'{evaluator}.ann_file'] = root + 'annotations/instances_val2017.json'
    options.update(extra)
    return options


def train_args(work_dir):
    return argparse.Namespace(work_dir=str(work_dir), launcher='none', resume=None, amp=False)


def tool_args_for_test(checkpoint, work_dir):
    return argparse.Namespace(checkpoint=str(checkpoint), work_dir=str(work_dir), launcher='none',
                              out=None, show_dir=None, tta=False)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The demo detector trained for 2 iterations (1 epoch of 8 images, batch 4), validated."""
    data = generate_demo_coco(tmp_path_factory.mktemp('demo_coco'), num_train=8, num_val=3,
                              seed=1)
    work_dir = tmp_path_factory.mktemp('work')
    options = demo_options(data.root, **{
        'train_dataloader.batch_size': 4, 'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1,
        # Keep every detection so that an undertrained model still has boxes to evaluate.
        'model.test_cfg.rcnn.score_thr': 0.0})
    runner = apis.train(merge_train_args(load_config(DEMO_CONFIG, options), train_args(work_dir)))
    return data, options, Path(runner.work_dir) / 'epoch_1.pth'


def test_test_tool_reports_box_and_mask_map_and_saves_outputs(trained, tmp_path):
    data, options, checkpoint = trained
    assert checkpoint.is_file()
    out, show_dir = tmp_path / 'predictions.pkl', tmp_path / 'painted'
    load_tool('test.py').main([
        str(DEMO_CONFIG), str(checkpoint), '--work-dir', str(tmp_path), '--out', str(out),
        '--show-dir', str(show_dir), '--cfg-options',
        *[f'{key}={value}' for key, value in options.items()]])
    log = next(tmp_path.glob('*/*.log')).read_text()
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50'):
        value = re.findall(rf'coco/{key}: ([-0-9.]+)', log)
        assert value and 0.0 <= float(value[-1]) <= 1.0, key
    dumped = mmengine.load(out)
    assert len(dumped) == 3
    assert all(len(sample['pred_instances']['bboxes']) > 0 for sample in dumped)
    assert sorted(path.name for path in show_dir.iterdir()) == [
        '000001.png', '000002.png', '000003.png']


def test_empty_predictions_do_not_crash_evaluation(trained, tmp_path):
    data, options, checkpoint = trained
    options = dict(options, **{'model.test_cfg.rcnn.score_thr': 1.01})
    cfg = merge_test_args(load_config(DEMO_CONFIG, options),
                          tool_args_for_test(checkpoint, tmp_path))
    metrics = apis.test(cfg)
    assert not any(key.startswith('coco/') for key in metrics)
    assert 'whole dataset is empty' in next(tmp_path.glob('*/*.log')).read_text()


def test_folder_inference_writes_visualization_and_json(trained, tmp_path):
    data, options, checkpoint = trained
    inputs = tmp_path / 'inputs'
    (inputs / 'sub').mkdir(parents=True)
    shutil.copy(data.val_dir / '000001.png', inputs / 'a.png')
    shutil.copy(data.val_dir / '000002.png', inputs / 'sub' / 'b.png')
    (inputs / 'notes.txt').write_text('not an image')
    (inputs / 'broken.png').write_bytes((data.val_dir / '000003.png').read_bytes()[:100])
    out_dir = tmp_path / 'out'

    summary = infer_folder(load_config(DEMO_CONFIG, options), str(checkpoint), inputs, out_dir,
                           batch_size=2)

    assert summary.num_images == 2 and summary.num_outputs == 4
    assert sorted(path.name for path, _ in summary.skipped) == ['broken.png', 'notes.txt']
    for stem, source in [(out_dir / 'a', inputs / 'a.png'), (out_dir / 'sub' / 'b',
                                                               inputs / 'sub' / 'b.png')]:
        image = cv2.imread(str(source))
        vis = cv2.imread(str(stem) + VIS_SUFFIX)
        assert vis.shape == image.shape
        result = json.loads(Path(str(stem) + JSON_SUFFIX).read_text())
        assert result['image_size'] == list(image.shape[:2])
        assert result['instances'], 'score_thr 0 keeps detections'
        for instance in result['instances']:
            assert instance['class'] == DEMO_COCO_CLASSES[instance['label']]
            assert len(instance['bbox']) == 4 and 0 <= instance['score'] <= 1
            mask = mask_utils.decode(dict(size=instance['mask']['size'],
                                          counts=instance['mask']['counts'].encode()))
            assert mask.shape == image.shape[:2]


def sample_with(image_shape, boxes, scores, labels):
    height, width = image_shape
    masks = torch.zeros(len(boxes), height, width, dtype=torch.bool)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        mask[y1:y2, x1:x2] = True
    sample = DetDataSample(metainfo=dict(ori_shape=(height, width)))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32), labels=torch.tensor(labels),
        masks=masks)
    return sample


def test_save_draws_only_confident_detections_and_keeps_all_in_json(trained, tmp_path):
    data, options, checkpoint = trained
    predictor = DetPredictor(load_config(DEMO_CONFIG, options), str(checkpoint), 'cpu',
                             score_thr=0.5)
    image = np.full((64, 80, 3), 128, np.uint8)
    sample = sample_with((64, 80), [(4, 4, 20, 30), (40, 28, 72, 60)], [0.9, 0.2], [2, 0])

    vis_path, json_path = predictor.save(image, sample, tmp_path / 'x')

    vis = cv2.imread(str(vis_path)).astype(int)
    changed = np.abs(vis - image).sum(axis=2) > 0
    assert changed[4:30, 4:20].mean() > 0.9, 'the confident mask is painted'
    assert not changed[32:56, 44:68].any(), 'the low-score one is not drawn'
    result = json.loads(json_path.read_text())
    assert [(i['class'], i['bbox']) for i in result['instances']] == [
        ('triangle', [4.0, 4.0, 20.0, 30.0]), ('square', [40.0, 28.0, 72.0, 60.0])]
    mask = mask_utils.decode(dict(size=result['instances'][0]['mask']['size'],
                                  counts=result['instances'][0]['mask']['counts'].encode()))
    assert mask.sum() == 16 * 26 and mask[4:30, 4:20].all()

    empty = sample_with((64, 80), [], [], [])
    vis_path, json_path = predictor.save(image, empty, tmp_path / 'empty')
    np.testing.assert_array_equal(cv2.imread(str(vis_path)), image)
    assert json.loads(json_path.read_text()) == dict(image_size=[64, 80], instances=[])


@pytest.mark.slow
def test_demo_run_learns_the_shapes(tmp_path):
    """The README's demo run: the demo config on the default generated data (minutes of CPU)."""
    data = generate_demo_coco(tmp_path / 'demo_coco')
    cfg = merge_train_args(load_config(DEMO_CONFIG, demo_options(data.root)),
                           train_args(tmp_path / 'work'))
    runner = apis.train(cfg)
    box_map = runner.message_hub.get_scalar('val/coco/bbox_mAP').current()
    mask_map = runner.message_hub.get_scalar('val/coco/segm_mAP').current()
    assert box_map > 0.15 and mask_map > 0.15, (box_map, mask_map)


def test_class_names_fall_back_to_the_config_without_checkpoint_meta(trained, tmp_path):
    data, options, checkpoint = trained
    bare = tmp_path / 'weights_only.pth'
    torch.save({'state_dict': torch.load(checkpoint, weights_only=False)['state_dict']}, bare)
    predictor = DetPredictor(load_config(DEMO_CONFIG, options), str(bare), 'cpu')
    assert predictor.classes == DEMO_COCO_CLASSES
    assert len(predictor.dataset_meta['palette']) == len(DEMO_COCO_CLASSES)

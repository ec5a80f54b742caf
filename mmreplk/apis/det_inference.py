"""Detection / instance-segmentation half of folder inference (configs with default_scope mmdet).

For every image :class:`DetPredictor` writes ``<stem>_det.png`` (boxes, class names, scores and
masks of the detections scoring at least ``score_thr``) and ``<stem>_det.json`` (every detection
the model returned: ``[x1, y1, x2, y2]`` box in pixels, score, label index, class name and the
mask as COCO run-length encoding).
"""
from __future__ import annotations

import copy
import json
import pathlib

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import DATASETS, MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from pycocotools import mask as mask_utils

from .inference import Predictor

#: Suffixes appended to the output stem.
VIS_SUFFIX = '_det.png'
JSON_SUFFIX = '_det.json'

_ANNOTATION_LOADERS = ('LoadAnnotations', 'mmdet.LoadAnnotations')


def detection_test_pipeline(cfg: Config) -> list[dict]:
    """The config's top-level ``test_pipeline`` adapted to in-memory images without labels.

    Args:
        cfg (Config): A detection config with a top-level ``test_pipeline``.

    Returns:
        list[dict]: Transform configs: image loading from an array, no annotation loading.
    """
    if 'test_pipeline' not in cfg:
        raise KeyError('the config has no top-level test_pipeline; detection inference needs one '
                       '(e.g. inherit mmdet::_base_/datasets/coco_instance.py)')
    pipeline = [dict(t) for t in copy.deepcopy(cfg.test_pipeline)
                if t['type'] not in _ANNOTATION_LOADERS]
    if not pipeline or 'LoadImage' not in pipeline[0]['type']:
        raise ValueError('test_pipeline must start with an image loading transform, got '
                         f'{[t["type"] for t in cfg.test_pipeline]}')
    pipeline[0] = dict(type='mmdet.LoadImageFromNDArray')
    return pipeline


def detections_to_json(result: DetDataSample, classes: tuple[str, ...] | list[str]) -> dict:
    """Serialises the predictions of one image.

    Args:
        result (DetDataSample): A prediction with ``pred_instances`` (``bboxes``, ``scores``,
            ``labels`` and optionally ``masks``) at the original image size.
        classes (tuple[str, ...] | list[str]): Class names, indexed by label.

    Returns:
        dict: ``image_size`` ([height, width]) and ``instances``, a list of dicts with ``bbox``
        ([x1, y1, x2, y2]), ``score``, ``label``, ``class`` and, for instance segmentation,
        ``mask`` (COCO RLE with ``size`` and ``counts``).
    """
    instances = result.pred_instances.cpu()
    masks = instances.masks.numpy().astype(np.uint8) if 'masks' in instances else None
    out = []
    for i, (bbox, score, label) in enumerate(zip(instances.bboxes.tolist(),
                                                 instances.scores.tolist(),
                                                 instances.labels.tolist())):
        entry = dict(bbox=[round(v, 2) for v in bbox], score=round(score, 5), label=label,
                     **{'class': classes[label] if label < len(classes) else str(label)})
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[i]))
            entry['mask'] = dict(size=[int(v) for v in rle['size']],
                                 counts=rle['counts'].decode('ascii'))
        out.append(entry)
    return dict(image_size=list(result.ori_shape), instances=out)


class DetPredictor(Predictor):
    """Runs a detector (e.g. Cascade Mask R-CNN) on in-memory images and writes its outputs.

    Class names come from the checkpoint's ``dataset_meta`` (saved by the training runner), or
    from the config's test dataset when the checkpoint has none.

    Args:
        cfg (Config): Detection config with a top-level ``test_pipeline``.
        checkpoint (str): Local checkpoint path (read under the checkpoint trust policy).
        device (str): Torch device, e.g. 'cpu' or 'cuda:0'.
        score_thr (float): Detections scoring below this are left out of the visualization
            (the JSON keeps them all). Defaults to 0.3.
    """

    def __init__(self, cfg: Config, checkpoint: str, device: str, score_thr: float = 0.3) -> None:
        super().__init__(cfg, checkpoint, device)
        self.score_thr = score_thr
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        model = revert_sync_batchnorm(MODELS.build(copy.deepcopy(cfg.model)))
        meta = load_checkpoint(model, checkpoint, map_location='cpu').get('meta', {})
        dataset_meta = meta.get('dataset_meta')
        if not dataset_meta:
            dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
            dataset_cfg['lazy_init'] = True
            dataset_meta = DATASETS.build(dataset_cfg).metainfo
        self.dataset_meta = {key.lower(): value for key, value in dataset_meta.items()}
        # mmdet's seeded 'random' palette, as its own inference API uses for classes without one.
        self.dataset_meta.setdefault('palette', 'random')
        self.model = model.to(device).eval()
        self.pipeline = Compose(detection_test_pipeline(cfg))
        # A private name keeps this visualizer apart from the runner's global 'visualizer'.
        self.visualizer = DetLocalVisualizer(name=f'mmreplk_det_predictor_{id(self)}')
        self.visualizer.dataset_meta = self.dataset_meta

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by predicted label."""
        return tuple(self.dataset_meta.get('classes', ()))

    def predict(self, images: list[np.ndarray]) -> list[DetDataSample]:
        """Detects objects in BGR uint8 images.

        Args:
            images (list[np.ndarray]): Images of shape (H, W, 3); sizes may differ.

        Returns:
            list[DetDataSample]: One prediction per image (on the CPU), boxes and masks at the
            image's own size.
        """
        batch = pseudo_collate([self.pipeline(dict(img=image, img_id=i))
                                for i, image in enumerate(images)])
        with torch.no_grad():
            results = self.model.test_step(batch)
        return [result.cpu() for result in results]

    def save(self, image: np.ndarray, result: DetDataSample,
             out_stem: pathlib.Path) -> list[pathlib.Path]:
        """Writes ``out_stem`` + ``_det.png`` (drawn detections) and + ``_det.json``.

        Args:
            image (np.ndarray): The BGR uint8 image given to :meth:`predict`.
            result (DetDataSample): Its prediction.
            out_stem (pathlib.Path): Output path without suffix; its parent exists.

        Returns:
            list[pathlib.Path]: The visualization and the JSON file.
        """
        vis_path = out_stem.with_name(out_stem.name + VIS_SUFFIX)
        json_path = out_stem.with_name(out_stem.name + JSON_SUFFIX)
        self.visualizer.add_datasample(out_stem.name, np.ascontiguousarray(image[..., ::-1]),
                                       result, draw_gt=False, show=False, out_file=str(vis_path),
                                       pred_score_thr=self.score_thr)
        json_path.write_text(json.dumps(detections_to_json(result, self.classes)))
        return [vis_path, json_path]

"""Object detection and instance segmentation (configs with ``default_scope='mmdet'``): the task
adapter, its folder-inference predictor and its inference path for FLOP counting.

For every image :class:`DetPredictor` writes ``<stem>_det.png`` (boxes, class names, scores and
masks of the detections scoring at least ``score_thr``) and ``<stem>_det.json`` (every detection
the model returned: ``[x1, y1, x2, y2]`` box in pixels, score, label index, class name and the
mask as COCO run-length encoding).

mmdet is imported only inside the functions that need it, so registering this adapter is cheap.
"""
from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from torch import nn

from mmreplk.utils import ConfigError
from .base import (TASK_ADAPTERS, InferencePath, KnownWarning, Predictor, TaskAdapter, as_list,
                   task_adapter, visualization_hook)

#: Suffixes appended to the output stem.
VIS_SUFFIX = '_det.png'
JSON_SUFFIX = '_det.json'
#: Proposals every box-head stage of a two-stage detector is counted on.
NUM_PROPOSALS = 1000
#: Proposals every mask-head stage is counted on.
NUM_MASK_ROIS = 100

_ANNOTATION_LOADERS = ('LoadAnnotations', 'mmdet.LoadAnnotations')


@TASK_ADAPTERS.register_module('mmdet')
class DetectionTask(TaskAdapter):
    """Detectors (e.g. Cascade Mask R-CNN): boxes, scores, labels and masks out."""

    task = 'detection'
    known_warnings = (
        # mmdet 3.3.0 pastes instance masks with tensor.new_tensor(tensor), which torch advises
        # against (it copies, which is what mmdet wants); raised once per image with masks.
        KnownWarning('To copy construct from a tensor', r'mmdet\.models\.roi_heads'),
        # mmengine's visualizer draws a predicted box or mask that reaches past the image border
        # clipped, as wanted, and warns about it once per such instance when the overlay is saved.
        KnownWarning(r'Warning: The (bbox|polygon) is out of bounds', r'mmengine\.visualization'),
    )

    def build_predictor(self, cfg: Config, checkpoint: str, device: str,
                        score_thr: float = 0.3) -> DetPredictor:
        return DetPredictor(cfg, checkpoint, device, score_thr=score_thr)

    def data_sample(self, meta: dict) -> object:
        from mmdet.structures import DetDataSample
        return DetDataSample(metainfo=dict(meta, scale_factor=(1., 1.)))

    def comparable_outputs(self, model: nn.Module, inputs: torch.Tensor,
                           data_samples: list) -> list[torch.Tensor]:
        """The backbone + neck features: the heads after them are unchanged by folding, and their
        proposal selection would turn a rounding-level difference into a different set of boxes.
        """
        with torch.no_grad():
            return list(model.extract_feat(inputs))

    def inference_path(self, model: nn.Module, shape: Sequence[int]) -> InferencePath:
        """Backbone, neck, the RPN head's convolutions, and every box-head stage on
        :data:`NUM_PROPOSALS` fixed proposals and every mask-head stage on the first
        :data:`NUM_MASK_ROIS` of them (the rule of mmdet 2.x's ``forward_dummy``, so numbers do
        not depend on how many boxes a random-weight RPN happens to keep)."""
        if not hasattr(model, 'roi_head'):
            raise ConfigError(f'FLOPs of {type(model).__name__} are not supported: only '
                              'segmentors and two-stage detectors have a defined inference path '
                              'here')
        proposals = fixed_proposals(shape).to(next(model.parameters()).device)
        return InferencePath(DetectorInferencePath(model, proposals), 'detector.')

    def export_graph(self, model: nn.Module) -> nn.Module:
        raise ConfigError('ONNX export supports segmentation configs; detectors (RoIAlign, NMS) '
                          'need a deployment toolkit such as mmdeploy')

    def set_test_out(self, cfg: Config, out: str) -> None:
        if not out.endswith(('.pkl', '.pickle')):
            raise ConfigError(f'--out for detection configs is a pickle file (.pkl), got {out}')
        cfg.test_evaluator = as_list(cfg.test_evaluator) + [
            dict(type='DumpDetResults', out_file_path=out)]

    def set_show_dir(self, cfg: Config, show_dir: str) -> None:
        hook = visualization_hook(cfg, 'DetVisualizationHook')
        hook.draw = True
        hook.test_out_dir = show_dir


def detection_test_pipeline(cfg: Config) -> list[dict]:
    """The config's top-level ``test_pipeline`` adapted to in-memory images without labels.

    Args:
        cfg (Config): A detection config with a top-level ``test_pipeline``.

    Returns:
        list[dict]: Transform configs: image loading from an array, no annotation loading.
    """
    if 'test_pipeline' not in cfg:
        raise ConfigError('the config has no top-level test_pipeline; detection inference needs '
                          'one (e.g. inherit mmdet::_base_/datasets/coco_instance.py)')
    pipeline = [dict(t) for t in copy.deepcopy(cfg.test_pipeline)
                if t['type'] not in _ANNOTATION_LOADERS]
    if not pipeline or 'LoadImage' not in pipeline[0]['type']:
        raise ConfigError('test_pipeline must start with an image loading transform, got '
                          f'{[t["type"] for t in cfg.test_pipeline]}')
    pipeline[0] = dict(type='mmdet.LoadImageFromNDArray')
    return pipeline


def detections_to_json(result, classes: tuple[str, ...] | list[str]) -> dict:
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
    from pycocotools import mask as mask_utils
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
        from mmdet.visualization import DetLocalVisualizer
        self.score_thr = score_thr
        self.task = task_adapter(cfg)
        self.model = self.task.build_model(cfg, checkpoint, device=device, strict='lenient')
        self.dataset_meta = self.task.dataset_meta(cfg, self.model)
        # mmdet's seeded 'random' palette, as its own inference API uses for classes without one.
        self.dataset_meta.setdefault('palette', 'random')
        self.pipeline = Compose(detection_test_pipeline(cfg))
        # A private name keeps this visualizer apart from the runner's global 'visualizer'.
        self.visualizer = DetLocalVisualizer(name=f'mmreplk_det_predictor_{id(self)}')
        self.visualizer.dataset_meta = self.dataset_meta

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by predicted label."""
        return tuple(self.dataset_meta.get('classes', ()))

    def predict(self, images: list[np.ndarray]) -> list:
        """Detects objects in BGR uint8 images.

        Args:
            images (list[np.ndarray]): Images of shape (H, W, 3); sizes may differ.

        Returns:
            list[DetDataSample]: One prediction per image (on the CPU), boxes and masks at the
            image's own size.
        """
        batch = pseudo_collate([self.pipeline(dict(img=image, img_id=i))
                                for i, image in enumerate(images)])
        with torch.no_grad(), self.task.known_warnings_filtered():
            results = self.model.test_step(batch)
        return [result.cpu() for result in results]

    def save(self, image: np.ndarray, result,
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
        with self.task.known_warnings_filtered():
            self.visualizer.add_datasample(out_stem.name, np.ascontiguousarray(image[..., ::-1]),
                                           result, draw_gt=False, show=False,
                                           out_file=str(vis_path), pred_score_thr=self.score_thr)
        json_path.write_text(json.dumps(detections_to_json(result, self.classes)))
        return [vis_path, json_path]


def roi_stage_outputs(roi_head: nn.Module, stage: int | None, feats: tuple[torch.Tensor, ...],
                      rois: torch.Tensor, mask_rois: torch.Tensor) -> list[torch.Tensor]:
    """Box and mask head outputs of one RoI-head stage on given RoIs.

    mmdet exposes a stage's heads on explicit RoIs only through the private ``_bbox_forward``
    and ``_mask_forward`` (a cascade's take the stage index first); this is the one place that
    calls them, so a change upstream breaks here, under ``tests/test_tasks``.

    Args:
        roi_head (nn.Module): A ``StandardRoIHead`` or ``CascadeRoIHead``.
        stage (int, optional): Cascade stage, or None for a single-stage RoI head.
        feats (tuple[torch.Tensor, ...]): Neck features.
        rois (torch.Tensor): RoIs (K, 5) for the box head.
        mask_rois (torch.Tensor): RoIs for the mask head.

    Returns:
        list[torch.Tensor]: ``cls_score`` and ``bbox_pred`` (with a box head), then
        ``mask_preds`` (with a mask head).
    """
    args = (feats,) if stage is None else (stage, feats)
    outs = []
    if roi_head.with_bbox:
        results = roi_head._bbox_forward(*args, rois)
        outs += [results['cls_score'], results['bbox_pred']]
    if roi_head.with_mask:
        outs.append(roi_head._mask_forward(*args, mask_rois)['mask_preds'])
    return outs


class DetectorInferencePath(nn.Module):
    """Backbone, neck, RPN head and RoI heads of a two-stage detector on fixed proposals.

    Args:
        detector (nn.Module): A two-stage mmdet detector.
        proposals (torch.Tensor): Boxes (K, 4) standing in for the RPN's proposals.
    """

    def __init__(self, detector: nn.Module, proposals: torch.Tensor) -> None:
        super().__init__()
        self.detector = detector
        self.register_buffer('proposals', proposals)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        from mmdet.structures.bbox import bbox2roi
        detector = self.detector
        feats = detector.extract_feat(image)
        # Every head output is returned: the tracer drops ops whose results go unused.
        cls_scores, bbox_preds = detector.rpn_head(feats)
        outs = [*cls_scores, *bbox_preds]
        roi_head = detector.roi_head
        rois = bbox2roi([self.proposals])
        stages = range(roi_head.num_stages) if hasattr(roi_head, 'num_stages') else [None]
        for stage in stages:
            outs += roi_stage_outputs(roi_head, stage, feats, rois, rois[:NUM_MASK_ROIS])
        return outs


def fixed_proposals(shape: Sequence[int], num: int = NUM_PROPOSALS, seed: int = 0) -> torch.Tensor:
    """Reproducible boxes inside an image, for counting RoI-head FLOPs.

    Args:
        shape (Sequence[int]): Image (H, W).
        num (int): Number of boxes. Defaults to :data:`NUM_PROPOSALS`.
        seed (int): Random seed. Defaults to 0.

    Returns:
        torch.Tensor: Boxes (num, 4) as (x1, y1, x2, y2).
    """
    height, width = shape
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([width, height]) * 0.75
    size = 16 + torch.rand(num, 2, generator=generator) * torch.tensor([width, height]) * 0.25
    return torch.cat([xy, xy + size], dim=1)

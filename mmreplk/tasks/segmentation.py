"""Semantic segmentation (configs with ``default_scope='mmseg'``): the task adapter, its folder
inference predictor, its ONNX graph and its inference path for FLOP counting.

mmseg is imported only inside the methods that need it, so registering this adapter is cheap.
"""
from __future__ import annotations

import copy
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from torch import nn

from mmreplk.utils import ConfigError
from .base import (TASK_ADAPTERS, InferencePath, KnownWarning, Predictor, TaskAdapter, as_list,
                   task_adapter, visualization_hook)
from .model_io import input_normalization

_OVERLAY_ALPHA = 0.5


@TASK_ADAPTERS.register_module('mmseg')
class SegmentationTask(TaskAdapter):
    """Segmentors (e.g. UperNet): logits in, class maps out."""

    task = 'segmentation'
    known_warnings = (
        # mmseg 1.2.2's own decode heads build their losses through its deprecated helper.
        KnownWarning('``build_loss`` would be deprecated', r'mmseg\.models\.builder'),
        # The recipes keep mmseg's default on purpose (the loss averaged over all pixels, as
        # mmseg 0.x computed it); the warning only says that PyTorch's cross_entropy differs.
        KnownWarning('Default ``avg_non_ignore`` is False', r'mmseg\.models\.losses'),
        # Raised for any reduce_zero_label argument, also the dataset-level one mmseg asks for.
        KnownWarning('`reduce_zero_label` will be deprecated', r'mmseg\.datasets'),
    )

    def build_predictor(self, cfg: Config, checkpoint: str, device: str) -> SegPredictor:
        return SegPredictor(cfg, checkpoint, device)

    def data_sample(self, meta: dict) -> object:
        from mmseg.structures import SegDataSample
        return SegDataSample(metainfo=meta)

    def comparable_outputs(self, model: nn.Module, inputs: torch.Tensor,
                           data_samples: list) -> list[torch.Tensor]:
        """The decode head's logits."""
        with torch.no_grad():
            return [model(inputs, data_samples, mode='tensor')]

    def inference_path(self, model: nn.Module, shape: Sequence[int]) -> InferencePath:
        """Backbone, neck and decode head; the auxiliary head is a training loss, excluded."""
        excluded = ('auxiliary_head',) if getattr(model, 'auxiliary_head', None) else ()
        return InferencePath(SegmentorInferencePath(model), 'segmentor.', excluded)

    def export_graph(self, model: nn.Module) -> nn.Module:
        return SegmentorForExport(model)

    def set_test_out(self, cfg: Config, out: str) -> None:
        # IoUMetric writes one prediction PNG per image there (and still computes the metric).
        for evaluator in as_list(cfg.test_evaluator):
            evaluator.output_dir = out

    def set_show_dir(self, cfg: Config, show_dir: str) -> None:
        hook = visualization_hook(cfg, 'SegVisualizationHook')
        hook.draw = True
        # mmseg's hook paints one batch in 50 by default; --show-dir means every image.
        hook.interval = 1
        cfg.visualizer.save_dir = show_dir


class SegPredictor(Predictor):
    """Runs an mmseg segmentor on in-memory images.

    For each image :meth:`save` writes ``<stem>_overlay.png`` (the image blended with the class
    colours) and ``<stem>_label.png`` (class indices 0..N-1 in the order of the checkpoint's
    ``dataset_meta['classes']``; 8-bit, or 16-bit beyond 256 classes), both of the input size.

    Args:
        cfg (Config): Segmentation config with a top-level ``test_pipeline``.
        checkpoint (str): Local checkpoint written by mmengine's runner.
        device (str): Torch device.
    """

    def __init__(self, cfg: Config, checkpoint: str, device: str) -> None:
        super().__init__(cfg, checkpoint, device)
        if 'test_pipeline' not in cfg:
            raise ConfigError('the config needs a top-level test_pipeline for inference')
        task = task_adapter(cfg)
        self.model = task.build_model(cfg, checkpoint, device=device, strict='lenient')
        steps = [step for step in copy.deepcopy(cfg.test_pipeline)
                 if step['type'] != 'LoadAnnotations']
        steps[0] = dict(type='LoadImageFromNDArray')
        self.pipeline = Compose(steps)
        palette = np.asarray(task.dataset_meta(cfg, self.model)['palette'], np.uint8)
        self.palette_bgr = palette[:, ::-1]

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Segments images.

        Args:
            images (list[np.ndarray]): BGR uint8 images (H, W, 3).

        Returns:
            list[np.ndarray]: Per image, an int64 (H, W) map of class indices.
        """
        packed = [self.pipeline(dict(img=image)) for image in images]
        # mmseg's test-time preprocessor stacks a batch without padding, so images whose
        # resized shapes differ go through the model in separate groups.
        groups: dict[tuple, list[int]] = {}
        for index, item in enumerate(packed):
            groups.setdefault(tuple(item['inputs'].shape), []).append(index)
        results: list[np.ndarray] = [None] * len(images)
        with torch.no_grad():
            for indices in groups.values():
                outputs = self.model.test_step(dict(
                    inputs=[packed[i]['inputs'] for i in indices],
                    data_samples=[packed[i]['data_samples'] for i in indices]))
                for index, out in zip(indices, outputs):
                    results[index] = out.pred_sem_seg.data[0].cpu().numpy()
        return results

    def save(self, image: np.ndarray, result: np.ndarray,
             out_stem: pathlib.Path) -> list[pathlib.Path]:
        """Writes the overlay and raw label PNGs.

        Args:
            image (np.ndarray): BGR uint8 input image.
            result (np.ndarray): Its class-index map from :meth:`predict`.
            out_stem (pathlib.Path): Output path without suffix.

        Returns:
            list[pathlib.Path]: The two files written.
        """
        colours = self.palette_bgr[result % len(self.palette_bgr)]
        overlay = cv2.addWeighted(image, 1 - _OVERLAY_ALPHA, colours, _OVERLAY_ALPHA, 0)
        labels = result.astype(np.uint8 if len(self.palette_bgr) <= 256 else np.uint16)
        paths = [out_stem.with_name(out_stem.name + '_overlay.png'),
                 out_stem.with_name(out_stem.name + '_label.png')]
        for path, array in zip(paths, (overlay, labels)):
            if not cv2.imwrite(str(path), array):
                raise OSError(f'could not write {path}')
        return paths


class SegmentorForExport(nn.Module):
    """The inference path of a segmentor as one graph: raw image in, full-size logits out.

    The model's data-preprocessor normalization (channel order, mean, std) is part of the graph,
    so the exported model takes images as ``cv2.imread`` gives them.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` in eval mode.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor
        normalization = input_normalization(segmentor.data_preprocessor)
        self.bgr_to_rgb = normalization.bgr_to_rgb
        self.normalize = normalization.mean is not None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Maps (N, 3, H, W) float BGR images in [0, 255] to (N, classes, H, W) logits."""
        if self.bgr_to_rgb:
            image = image.flip(1)
        if self.normalize:
            preprocessor = self.segmentor.data_preprocessor
            image = (image - preprocessor.mean) / preprocessor.std
        meta = dict(img_shape=tuple(image.shape[2:]), ori_shape=tuple(image.shape[2:]),
                    pad_shape=tuple(image.shape[2:]))
        return self.segmentor.encode_decode(image, [meta] * image.shape[0])


class SegmentorInferencePath(nn.Module):
    """``extract_feat`` then the decode head, called as a module so its own ops are attributed
    to it (``EncoderDecoder`` calls ``decode_head.forward`` directly, which hides them).

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder``.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.segmentor.decode_head(self.segmentor.extract_feat(image))

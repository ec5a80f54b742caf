"""Segmentation :class:`~mmreplk.apis.inference.Predictor`: colour overlay and raw label PNGs."""
from __future__ import annotations

import copy
import pathlib

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.model.utils import revert_sync_batchnorm
from mmseg.apis import init_model

from .inference import Predictor

_OVERLAY_ALPHA = 0.5


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
            raise ValueError('the config needs a top-level test_pipeline for inference')
        # init_model edits the config it is given (drops init_cfg, train_cfg).
        self.model = revert_sync_batchnorm(init_model(copy.deepcopy(cfg), checkpoint, device))
        steps = [step for step in copy.deepcopy(cfg.test_pipeline)
                 if step['type'] != 'LoadAnnotations']
        steps[0] = dict(type='LoadImageFromNDArray')
        self.pipeline = Compose(steps)
        palette = np.asarray(self.model.dataset_meta['palette'], np.uint8)
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

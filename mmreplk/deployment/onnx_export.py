"""ONNX export of a deploy-form model (the graph its task adapter gives), checked against PyTorch
with onnxruntime."""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from torch import nn

from mmreplk.apis import load_config
from mmreplk.models import reparameterize
from mmreplk.tasks import DEPLOY_FROM_CHECKPOINT, max_differences, synthetic_image, task_adapter
from mmreplk.utils import ToolError, import_optional

#: onnxruntime output must match PyTorch within this fraction of the largest output magnitude.
DEFAULT_RTOL = 1e-4


class ExportMismatchError(ToolError, ValueError):
    """onnxruntime's output differs from PyTorch's by more than the tolerance."""


class MatmulAdaptiveAvgPool2d(nn.Module):
    """Adaptive average pooling as two matrix products, exact for any input and output size.

    The ONNX exporter turns ``AdaptiveAvgPool2d`` into a fixed pooling window, which it can only
    do when the output size divides the input size; UperNet's pyramid pooling (scales 1, 2, 3, 6)
    on a 16x16 map (512x512 image) does not. The pooling matrices are built from tensor ops on
    the input's size, so the tracer records them instead of reading the size as a Python value.

    Args:
        output_size (int | tuple): As for ``nn.AdaptiveAvgPool2d`` (None keeps that side).
    """

    def __init__(self, output_size: int | tuple) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size
        out_h, out_w = (size, size) if isinstance(size, int) else size
        height, width = x.shape[2], x.shape[3]
        rows = _pooling_matrix(height, height if out_h is None else out_h, x)
        cols = _pooling_matrix(width, width if out_w is None else out_w, x)
        return rows @ x @ cols.t()


def _pooling_matrix(size: int | torch.Tensor, bins: int | torch.Tensor,
                    like: torch.Tensor) -> torch.Tensor:
    """(bins, size) matrix whose rows average PyTorch's adaptive-pooling windows.

    Window i covers ``[floor(i * size / bins), ceil((i + 1) * size / bins))``.
    """
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode='floor')
    end = -torch.div(-(index + 1) * size, bins, rounding_mode='floor')
    columns = torch.arange(size, device=like.device)
    inside = (columns[None] >= start[:, None]) & (columns[None] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def make_pooling_exportable(model: nn.Module) -> nn.Module:
    """Replaces every ``nn.AdaptiveAvgPool2d`` in ``model`` by :class:`MatmulAdaptiveAvgPool2d`.

    Args:
        model (nn.Module): Model to edit in place.

    Returns:
        nn.Module: ``model``.
    """
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(module, name, MatmulAdaptiveAvgPool2d(child.output_size))
    return model


@dataclasses.dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how well onnxruntime agrees with PyTorch.

    Args:
        path (Path): The ONNX file.
        input_shape (tuple): Shape of the exported input (N, 3, H, W); N is dynamic.
        max_abs_diff (float, optional): Max |onnxruntime - PyTorch| on a test image.
        max_abs_output (float, optional): Max |PyTorch| on the same image.
        rtol (float): Tolerance the check used, relative to ``max_abs_output``.
    """
    path: Path
    input_shape: tuple
    max_abs_diff: float | None = None
    max_abs_output: float | None = None
    rtol: float = DEFAULT_RTOL


def export_onnx(config: str | os.PathLike | Config,
                checkpoint: str | os.PathLike,
                out: str | os.PathLike,
                shape: Sequence[int] = (512, 512),
                opset: int = 17,
                check: bool = True,
                rtol: float = DEFAULT_RTOL) -> ExportResult:
    """Exports the deploy form of a model to ONNX and checks it with onnxruntime.

    The graph is the task adapter's ``export_graph`` (segmentors: raw image in, full-size logits
    out, see :class:`~mmreplk.tasks.SegmentorForExport`; detectors are refused).

    A training-form checkpoint is folded first; a re-parameterized one (from
    :func:`reparameterize_checkpoint`) is loaded as is. The graph is exported with the
    TorchScript-based exporter (no extra dependencies) at a fixed image size, batch dynamic;
    adaptive pooling is rewritten by :func:`make_pooling_exportable` so any size exports.

    Args:
        config (str | os.PathLike | Config): A config whose task supports export
            (segmentation).
        checkpoint (str | os.PathLike): Its checkpoint, training or deploy form.
        out (str | os.PathLike): Output ``.onnx`` path.
        shape (Sequence[int]): Image size (H, W) of the graph. Defaults to (512, 512).
        opset (int): ONNX opset. Defaults to 17.
        check (bool): Run the file with onnxruntime on a test image and raise if it differs
            from PyTorch by more than ``rtol`` x the largest output. Defaults to True.
        rtol (float): See ``check``. Defaults to :data:`DEFAULT_RTOL`.

    Returns:
        ExportResult: The file and, with ``check``, the measured difference.
    """
    cfg = load_config(config)
    task = task_adapter(cfg)
    # A folded file is loaded as it is (folding it again changes nothing); a trained one folded.
    model = reparameterize(task.build_model(cfg, checkpoint, deploy=DEPLOY_FROM_CHECKPOINT))
    wrapper = task.export_graph(make_pooling_exportable(model)).eval()

    height, width = shape
    image = torch.from_numpy(synthetic_image((height, width)).transpose(2, 0, 1).copy())
    image = image[None].float()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation; it remains the dependency-free path.
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        torch.onnx.export(wrapper, (image,), os.fspath(out), dynamo=False, opset_version=opset,
                          input_names=['image'], output_names=['seg_logits'],
                          dynamic_axes={'image': {0: 'batch'}, 'seg_logits': {0: 'batch'}})
    result = ExportResult(out, (1, 3, height, width), rtol=rtol)
    if check:
        with torch.no_grad():
            expected = wrapper(image)
        actual = torch.from_numpy(run_onnxruntime(out, image.numpy()))
        result.max_abs_diff, result.max_abs_output = max_differences([actual], [expected])
        if result.max_abs_diff > rtol * result.max_abs_output:
            raise ExportMismatchError(f'onnxruntime output of {out} differs from PyTorch by '
                                      f'{result.max_abs_diff:.3e} (> {rtol} x max |output| '
                                      f'{result.max_abs_output:.3e}); the export is not faithful')
    return result


def run_onnxruntime(path: str | os.PathLike, image: np.ndarray) -> np.ndarray:
    """Runs an exported segmentor on CPU with onnxruntime.

    Args:
        path (str | os.PathLike): The ``.onnx`` file.
        image (np.ndarray): Float32 input of shape (N, 3, H, W).

    Returns:
        np.ndarray: The ``seg_logits`` output.
    """
    onnxruntime = import_optional('onnxruntime', 'checking the export',
                                  'pip install onnx onnxruntime (or pip install -e .[onnx]); skip '
                                  'the check with --no-check')
    session = onnxruntime.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    return session.run(['seg_logits'], {'image': image.astype(np.float32)})[0]

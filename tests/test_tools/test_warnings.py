"""Folder inference and ONNX export print no warning: upstream ones known to be harmless are
filtered where they arise (each task adapter's ``known_warnings``), ours are fixed."""
import importlib.util
import warnings
from pathlib import Path

import cv2
import pytest
import torch
from mmengine.config import Config

from mmreplk.apis import infer_folder
from mmreplk.deployment import export_onnx
from mmreplk.tasks import build_model, synthetic_image, task_adapter

ROOT = Path(__file__).parents[2]
SEG_DEMO = ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'
DET_DEMO = ROOT / 'configs' / 'demo' / 'cascade_mask_rcnn_replknet_tiny_demo.py'
SEG_TINY = ROOT / 'tests' / 'data' / 'configs' / 'tiny_upernet_replknet.py'
HAS_ONNXRUNTIME = all(importlib.util.find_spec(name) for name in ('onnx', 'onnxruntime'))


def _checkpoint(config: Path, path: Path) -> Path:
    torch.manual_seed(0)
    torch.save({'state_dict': build_model(Config.fromfile(str(config))).state_dict()}, path)
    return path


def _shown_warnings(function, *args, **kwargs) -> list[str]:
    """The warnings ``function`` raises that Python would print (DeprecationWarnings outside
    ``__main__`` are hidden by Python's default filters)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        function(*args, **kwargs)
    return [f'{w.category.__name__} {w.filename}:{w.lineno}: {w.message}' for w in caught
            if not issubclass(w.category, DeprecationWarning)]


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    for seed in range(2):
        cv2.imwrite(str(folder / f'{seed}.png'), synthetic_image((64, 80), seed=seed))
    return folder


@pytest.mark.parametrize('config', [SEG_DEMO, DET_DEMO], ids=['segmentation', 'detection'])
def test_folder_inference_prints_no_warning(config, images, tmp_path):
    checkpoint = _checkpoint(config, tmp_path / 'model.pth')
    shown = _shown_warnings(infer_folder, config, str(checkpoint), images, tmp_path / 'out')
    assert not shown, shown
    assert len(list((tmp_path / 'out').iterdir())) >= 2  # it really ran


def test_onnx_export_prints_no_warning(tmp_path):
    checkpoint = _checkpoint(SEG_TINY, tmp_path / 'model.pth')
    shown = _shown_warnings(export_onnx, SEG_TINY, checkpoint, tmp_path / 'm.onnx',
                            shape=(64, 96), check=HAS_ONNXRUNTIME)
    assert not shown, shown
    assert (tmp_path / 'm.onnx').stat().st_size > 0


def test_the_filter_is_narrow():
    """Only the named upstream messages are silenced, and only inside the context."""
    task = task_adapter('mmseg')
    known = task.known_warnings[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with task.known_warnings_filtered():
            warnings.warn_explicit(known.message.replace('\\', ''), known.category,
                                   'builder.py', 1, module='mmseg.models.builder')
            warnings.warn('something else', UserWarning)
        warnings.warn_explicit(known.message.replace('\\', ''), known.category, 'builder.py', 1,
                               module='mmseg.models.builder')
    assert [str(w.message) for w in caught] == ['something else', known.message]

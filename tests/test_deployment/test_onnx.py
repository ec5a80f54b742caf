"""tools/export_onnx.py: deploy-form segmentor -> ONNX, checked with onnxruntime."""
import importlib.util

import numpy as np
import pytest
import torch
from helpers import load_tool
from mmengine.config import Config

from mmreplk.deployment import (MatmulAdaptiveAvgPool2d, export_onnx, reparameterize_checkpoint,
                                run_onnxruntime)
from mmreplk.tasks import SegmentorForExport, build_model
from mmreplk.utils import read_state_dict
from .conftest import DET_CONFIG, SEG_CONFIG

requires_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec('onnx') is None or importlib.util.find_spec('onnxruntime') is None,
    reason='onnx / onnxruntime are not installed (pip install -e .[onnx])')


@requires_onnxruntime
@pytest.mark.parametrize('folded_first', [False, True])
def test_onnx_round_trip_matches_pytorch(seg_checkpoint, tmp_path, folded_first):
    checkpoint = seg_checkpoint
    if folded_first:
        checkpoint = reparameterize_checkpoint(SEG_CONFIG, seg_checkpoint, tmp_path / 'd.pth').out
    result = export_onnx(SEG_CONFIG, checkpoint, tmp_path / 'model.onnx', shape=(64, 96))
    assert result.path.stat().st_size > 0
    assert result.max_abs_output > 0
    assert result.max_abs_diff <= result.rtol * result.max_abs_output

    # An independent image, batch of 2 (the batch axis is dynamic), against the trained model.
    trained = build_model(Config.fromfile(str(SEG_CONFIG)))
    trained.load_state_dict(read_state_dict(seg_checkpoint)[0])
    image = np.random.default_rng(5).uniform(0, 255, (2, 3, 64, 96)).astype(np.float32)
    logits = run_onnxruntime(result.path, image)
    with torch.no_grad():
        expected = SegmentorForExport(trained)(torch.from_numpy(image))
    assert logits.shape == (2, 5, 64, 96)
    scale = expected.abs().max().item()
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=0, atol=1e-4 * scale)


def test_detectors_are_refused_with_a_reason(det_checkpoint, tmp_path):
    with pytest.raises(ValueError, match='segmentation configs.*mmdeploy'):
        export_onnx(DET_CONFIG, det_checkpoint, tmp_path / 'det.onnx')


@requires_onnxruntime
def test_cli(seg_checkpoint, tmp_path, capsys):
    tool = load_tool('export_onnx.py')
    out = tmp_path / 'seg.onnx'
    assert tool.main([str(SEG_CONFIG), str(seg_checkpoint), str(out), '--shape', '64', '64']) == 0
    assert out.is_file() and 'onnxruntime vs PyTorch' in capsys.readouterr().out


@pytest.mark.parametrize('output_size,shape', [(6, (16, 16)), (3, (2, 3)), ((2, None), (7, 5)),
                                               (1, (4, 4))])
def test_matmul_pooling_equals_adaptive_pooling(output_size, shape):
    x = torch.randn(2, 3, *shape)
    expected = torch.nn.AdaptiveAvgPool2d(output_size)(x)
    torch.testing.assert_close(MatmulAdaptiveAvgPool2d(output_size)(x), expected)

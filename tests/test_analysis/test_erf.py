"""ERF analysis: contribution maps, the paper's area ratios, heatmap and tool output."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import load_tool

from mmreplk.analysis import (THRESHOLDS, compute_erf, contribution_map,
                              high_contribution_area_ratios, normalize_erf, save_erf_heatmap)

CONFIGS = Path(__file__).parents[1] / 'data' / 'configs'


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f'img_{i}.png'), rng.integers(0, 256, (40, 52, 3), np.uint8))
    (folder / 'a_notes.txt').write_text('not an image')
    return folder


def test_area_ratios_of_a_uniform_map():
    ratios = high_contribution_area_ratios(np.ones((21, 21)))
    # centred odd squares 3..19: the first whose share exceeds t
    assert ratios == {0.2: (11, 121 / 441), 0.3: (13, 169 / 441), 0.5: (15, 225 / 441),
                      0.99: None}


def test_area_ratios_of_a_peaked_map_are_small():
    scores = np.zeros((31, 31))
    scores[14:17, 14:17] = 1.0
    scores[0, 0] = 0.01
    assert high_contribution_area_ratios(scores, (0.5, 0.99)) == {0.5: (3, 9 / 961),
                                                                  0.99: (3, 9 / 961)}


def test_normalize_is_log_scaled_to_one():
    normalized = normalize_erf(np.array([[0., 9.], [99., 999.]]))
    np.testing.assert_allclose(normalized, [[0, 1 / 3], [2 / 3, 1]])


def test_contribution_map_covers_the_receptive_field_only():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    torch.nn.init.constant_(conv.weight, 1.0)
    torch.nn.init.constant_(conv.bias, 1.0)
    scores = contribution_map(conv.eval(), torch.rand(1, 3, 9, 9))
    expected = np.zeros((9, 9))
    expected[3:6, 3:6] = 3 * 4  # 3 input channels, 4 output channels, weight 1
    np.testing.assert_allclose(scores, expected)


@pytest.mark.parametrize('config', ['tiny_upernet_replknet.py', 'tiny_upernet_resnet.py'])
def test_compute_erf_for_any_backbone(config, image_dir):
    result = compute_erf(CONFIGS / config, image_dir, input_size=(64, 64), num_images=2)
    assert result.num_images == 2
    assert result.skipped and 'a_notes.txt' in result.skipped[0]
    assert result.scores.shape == (64, 64) and result.scores.max() > 0
    ratios = result.area_ratios()
    assert list(ratios) == list(THRESHOLDS)
    sides = [found[0] for found in ratios.values() if found]
    assert sides == sorted(sides) and all(side % 2 == 1 for side in sides)


def test_checkpoint_with_backbone_weights_is_loaded(image_dir, tmp_path):
    from mmengine.config import Config

    from mmreplk.tasks import build_model
    config = CONFIGS / 'tiny_upernet_replknet.py'
    model = build_model(Config.fromfile(str(config)))
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'seg.pth')
    first = compute_erf(config, image_dir, tmp_path / 'seg.pth', input_size=(64, 64), num_images=1)
    again = compute_erf(config, image_dir, tmp_path / 'seg.pth', input_size=(64, 64), num_images=1)
    np.testing.assert_allclose(first.scores, again.scores)
    torch.save({'state_dict': {'decode_head.conv_seg.weight': torch.zeros(1)}}, tmp_path / 'x.pth')
    with pytest.raises(ValueError, match='lacks .* weights of the RepLKNet backbone'):
        compute_erf(config, image_dir, tmp_path / 'x.pth', input_size=(64, 64), num_images=1)


def test_heatmap_png_is_written(tmp_path):
    path = save_erf_heatmap(np.random.default_rng(0).random((32, 32)), tmp_path / 'erf.png', 'x')
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100


def test_cli_writes_heatmap_and_four_ratios(image_dir, tmp_path, capsys):
    tool = load_tool('analysis/visualize_erf.py')
    out = tmp_path / 'erf.png'
    status = tool.main([str(CONFIGS / 'tiny_upernet_replknet.py'), str(image_dir), '--out',
                        str(out), '--size', '64', '64', '--num-images', '2'])
    assert status == 0 and cv2.imread(str(out)) is not None
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines()
            if line.split() and line.split()[0] in {str(t) for t in THRESHOLDS}]
    assert [row[0] for row in rows] == ['0.2', '0.3', '0.5', '0.99']

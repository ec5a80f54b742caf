"""get_model_complexity / tools/analysis/get_flops.py against FLOPs counted by hand.

Convention (mmengine.analysis): 1 multiply-add = 1 FLOP, bias adds not counted, eval BN 2 per
element, bilinear upsampling 4 per output element, adaptive average pooling 1 per input element.
"""
from pathlib import Path

import pytest
from helpers import TINY_ARCH, load_tool

from mmreplk.analysis import get_model_complexity
from mmreplk.tasks.detection import NUM_MASK_ROIS, NUM_PROPOSALS

CONFIGS = Path(__file__).parents[1] / 'data' / 'configs'
SEG_CONFIG = CONFIGS / 'tiny_upernet_replknet.py'
DET_CONFIG = CONFIGS / 'tiny_cascade_replknet.py'


def conv(cin, cout, k, side, groups=1):
    return cin // groups * cout * k * k * side * side


def replknet_flops(arch, size, deploy=False):
    """Multiply-adds (+ eval BN terms) of a RepLKNet backbone on a size x size image."""
    bn = 0 if deploy else 2
    c = arch['channels']
    side = size // 2
    total = conv(3, c[0], 3, side) + conv(c[0], c[0], 3, side, c[0]) + conv(c[0], c[0], 1, side)
    total += 3 * bn * c[0] * side ** 2
    side //= 2
    total += conv(c[0], c[0], 3, side, c[0]) + bn * c[0] * side ** 2
    for i, (width, kernel, pairs) in enumerate(zip(c, arch['large_kernel_sizes'], arch['layers'])):
        px = side ** 2
        hidden = width * arch['ffn_ratio']
        block = 2 * width * width * px + kernel ** 2 * width * px + 3 * bn * width * px
        if not deploy:
            block += arch['small_kernel'] ** 2 * width * px + 2 * width * px  # small conv + BN
            block += 2 * width * px  # prelkb_bn
        ffn = 2 * width * hidden * px + bn * (hidden + width) * px
        if not deploy:
            ffn += 2 * width * px  # preffn_bn
        total += pairs * (block + ffn)
        if i + 1 < len(c):
            total += conv(width, c[i + 1], 1, side) + bn * c[i + 1] * px
            side //= 2
            total += conv(c[i + 1], c[i + 1], 3, side, c[i + 1]) + bn * c[i + 1] * side ** 2
    return total


def upernet_flops(in_channels, channels, num_classes, size):
    """UPerHead on stride-4..32 features of a size x size image (no auxiliary head)."""
    sides = [size // 4 // 2 ** i for i in range(4)]
    last, top = in_channels[-1], sides[-1]
    total = 0
    for scale in (1, 2, 3, 6):  # PPM: pool, 1x1 ConvModule, upsample back
        total += last * top ** 2 + conv(last, channels, 1, scale) + 2 * channels * scale ** 2
        total += 4 * channels * top ** 2
    total += conv(last + 4 * channels, channels, 3, top) + 2 * channels * top ** 2
    for cin, side in zip(in_channels[:3], sides[:3]):  # lateral 1x1 and fpn 3x3 ConvModules
        total += conv(cin, channels, 1, side) + conv(channels, channels, 3, side)
        total += 4 * channels * side ** 2
    total += sum(4 * channels * side ** 2 for side in sides[:3])  # top-down upsampling
    total += 3 * 4 * channels * sides[0] ** 2  # fpn outputs upsampled to stride 4
    total += conv(4 * channels, channels, 3, sides[0]) + 2 * channels * sides[0] ** 2
    return total + conv(channels, num_classes, 1, sides[0])


@pytest.mark.parametrize('deploy', [False, True])
def test_segmentor_flops_equal_the_hand_count(deploy):
    result = get_model_complexity(SEG_CONFIG, shape=(64, 64), deploy=deploy)
    backbone = replknet_flops(TINY_ARCH, 64, deploy)
    head = upernet_flops(TINY_ARCH['channels'], 16, 5, 64)
    assert result.components['backbone'][1] == backbone
    assert result.components['decode_head'][1] == head
    assert result.flops == backbone + head
    assert result.flops == (1_332_608 if deploy else 1_571_840) + 3_393_728
    assert result.components['auxiliary_head'][1] == 0
    assert result.excluded == ('auxiliary_head',)
    assert result.params == result.components['backbone'][0] + result.components['decode_head'][0]


def test_backbone_flops_scale_with_the_input():
    wide = get_model_complexity(SEG_CONFIG, shape=(64, 128))
    assert wide.components['backbone'][1] == 2 * replknet_flops(TINY_ARCH, 64)
    assert wide.params == get_model_complexity(SEG_CONFIG, shape=(64, 64)).params


def test_detector_roi_heads_are_counted_on_fixed_proposals():
    result = get_model_complexity(DET_CONFIG, shape=(64, 96))
    width, fc, classes = 16, 32, 3
    box_stage = width * 49 * fc + fc * fc + fc * (classes + 1) + fc * 4
    mask_stage = (4 * conv(width, width, 3, 14) + width * width * 4 * 14 * 14
                  + conv(width, classes, 1, 28))
    expected = 3 * (NUM_PROPOSALS * box_stage + NUM_MASK_ROIS * mask_stage)
    assert result.components['roi_head'][1] == expected
    assert result.components['backbone'][1] == replknet_flops(TINY_ARCH, 64) * 96 // 64
    assert result.flops == sum(flops for _, flops in result.components.values())
    assert result.params == sum(params for params, _ in result.components.values())


def test_cli_prints_the_table(capsys):
    tool = load_tool('analysis/get_flops.py')
    assert tool.main([str(SEG_CONFIG), '--shape', '64', '64']) == 0
    printed = capsys.readouterr().out
    assert '1 multiply-add = 1 FLOP' in printed and 'decode_head' in printed
    assert 'auxiliary_head (not counted)' in printed


@pytest.mark.slow
def test_the_paper_counts_the_folded_31b_upernet():
    config = Path(__file__).parents[2] / 'configs' / 'upernet_replknet31b_ade20k.py'
    folded = get_model_complexity(config, shape=(512, 2048), deploy=True)
    assert abs(folded.flops / 1170e9 - 1) < 0.001, folded.flops  # the paper's 1170G
    assert round(folded.params / 1e6) == 112
    training = get_model_complexity(config, shape=(512, 2048))
    assert training.flops / 1170e9 - 1 > 0.002, training.flops  # 5x5 branches and BNs

"""Effective receptive field of a backbone: heatmap PNG and high-contribution area ratios.

Examples:
    python tools/analysis/visualize_erf.py configs/upernet_replknet31b_ade20k.py \
        work_dirs/upernet_replknet31b/iter_40000.pth data/ade/images/validation \
        --out erf_replknet31b.png
    # a small-kernel network for comparison, from mmseg's installed configs
    python tools/analysis/visualize_erf.py \
        $(python -c 'import mmseg, os; print(os.path.dirname(mmseg.__file__))')/.mim/configs/upernet/upernet_r101_4xb4-160k_ade20k-512x512.py \
        upernet_r101_ade20k.pth data/ade/images/validation --out erf_resnet101.png

CHECKPOINT is optional: without it the backbone keeps its random initialization.
"""
from __future__ import annotations

import argparse
import os
import sys

from mmreplk.analysis import THRESHOLDS, compute_erf, format_area_ratios, save_erf_heatmap
from mmreplk.apis import add_config_args, checkpoint_trust, exit_on_user_error, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The RepLKNet paper's ERF analysis for the backbone of any mmseg config.")
    parser.add_argument('config', help='mmseg config (RepLKNet, ResNet, ...)')
    parser.add_argument('paths', nargs='+', metavar='[CHECKPOINT] IMAGE_DIR',
                        help='optional segmentor/backbone checkpoint, then the image folder')
    parser.add_argument('--out', required=True, help='heatmap PNG to write')
    parser.add_argument('--size', type=int, nargs=2, default=[1024, 1024], metavar=('H', 'W'),
                        help='input size (default 1024 1024, as in the paper)')
    parser.add_argument('--num-images', type=int, default=50,
                        help='images to average (default 50, as in the paper)')
    parser.add_argument('--device', default='cpu', help='torch device (default cpu)')
    add_config_args(parser)
    args = parser.parse_args(argv)
    if len(args.paths) > 2:
        parser.error('expected [CHECKPOINT] IMAGE_DIR')
    args.checkpoint = args.paths[0] if len(args.paths) == 2 else None
    args.image_dir = args.paths[-1]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error(), checkpoint_trust(args):
        cfg = load_config(args.config, args.cfg_options)
        result = compute_erf(cfg, args.image_dir, args.checkpoint, input_size=args.size,
                             num_images=args.num_images, device=args.device)
    ratios = result.area_ratios(THRESHOLDS)
    name = os.path.splitext(os.path.basename(args.config))[0]
    title = f'{name}: ' + ', '.join(
        f't={t}: {r[1]:.3f}' if r else f't={t}: -' for t, r in ratios.items())
    save_erf_heatmap(result.normalized, args.out, title)
    print(f'ERF of {cfg.model.backbone.type} over {result.num_images} images '
          f'({args.size[0]}x{args.size[1]}); heatmap: {args.out}')
    print('high-contribution area ratio (smallest centred square holding > t of the '
          'log-scaled contribution):')
    print(format_area_ratios(ratios))
    return 0


if __name__ == '__main__':
    sys.exit(main())

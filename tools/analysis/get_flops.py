"""Parameters and FLOPs (multiply-adds) of the whole model a config builds.

Examples:
    python tools/analysis/get_flops.py configs/upernet_replknet31b_ade20k.py \
        --shape 512 2048
    python tools/analysis/get_flops.py configs/cascade_mask_rcnn_replknet31b_coco.py \
        --shape 800 1280

See :mod:`mmreplk.analysis.flops` for the counting convention.
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.analysis import get_model_complexity
from mmreplk.apis import add_config_args, exit_on_user_error, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count parameters and FLOPs (1 multiply-add = 1 FLOP) of a segmentor or '
        'detector on one image.')
    parser.add_argument('config', help='segmentation or detection config')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'),
                        help='input image height and width (default 512 512)')
    parser.add_argument('--deploy', action='store_true',
                        help='count the re-parameterized (deploy) form')
    add_config_args(parser, checkpoint=False)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        result = get_model_complexity(load_config(args.config, args.cfg_options),
                                      shape=args.shape, deploy=args.deploy)
    height, width = result.input_shape
    form = 'deploy' if args.deploy else 'training'
    print(f'{args.config}: input {height}x{width} (H x W), {form} form, 1 multiply-add = 1 FLOP')
    print(result.table())
    if result.unsupported_ops:
        ops = ', '.join(f'{op} x{n}' for op, n in sorted(result.unsupported_ops.items()))
        print(f'ops counted as 0 FLOPs: {ops}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

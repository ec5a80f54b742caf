"""Write one of the offline demo datasets (deterministic from --seed).

Examples:
    # segmentation, ADE20K layout: 240 training + 40 validation images of 128x128
    python tools/generate_demo_data.py ade20k data/demo_ade
    # instance segmentation, COCO 2017 layout: 200 training + 50 validation images of 128x128
    python tools/generate_demo_data.py coco data/demo_coco
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import exit_on_user_error
from mmreplk.datasets import generate_demo_coco, generate_demo_dataset

#: Per dataset: (default training images, default validation images).
DEFAULT_SIZES = {'ade20k': (240, 40), 'coco': (200, 50)}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write an offline demo dataset: shapes on '
                                     'random backgrounds, in ADE20K or COCO 2017 layout.')
    parser.add_argument('layout', choices=sorted(DEFAULT_SIZES),
                        help='ade20k: semantic segmentation (configs/demo/upernet_*); '
                        'coco: instance segmentation (configs/demo/cascade_mask_rcnn_*)')
    parser.add_argument('root', help='dataset root, e.g. data/demo_ade or data/demo_coco')
    parser.add_argument('--num-train', type=_positive,
                        help='training images (default: 240 for ade20k, 200 for coco)')
    parser.add_argument('--num-val', type=_positive,
                        help='validation images (default: 40 for ade20k, 50 for coco)')
    parser.add_argument('--size', type=_positive, default=128, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    num_train, num_val = DEFAULT_SIZES[args.layout]
    args.num_train = args.num_train or num_train
    args.num_val = args.num_val or num_val
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        if args.layout == 'ade20k':
            root = generate_demo_dataset(args.root, args.num_train, args.num_val, args.size,
                                         args.seed)
        else:
            root = generate_demo_coco(args.root, args.num_train, args.num_val,
                                      (args.size, args.size), seed=args.seed).root
    print(f'demo {args.layout} dataset written to {root} ({args.num_train} training, '
          f'{args.num_val} validation images of {args.size}x{args.size})')
    return 0


if __name__ == '__main__':
    sys.exit(main())

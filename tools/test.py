"""Evaluate a checkpoint on a config's test split (mmseg or mmdet scope).

Example:
    python tools/test.py configs/upernet_replknet31b_ade20k.py work_dirs/x/iter_40000.pth --tta
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import (add_runner_args, checkpoint_trust, exit_on_user_error, load_config,
                          merge_test_args, parse_runner_args, test)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a RepLKNet model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='keep the predictions (segmentation: a folder of PNGs; '
                        'detection: a pickle file, .pkl)')
    parser.add_argument('--show-dir', help='folder for images painted with the predictions')
    parser.add_argument('--tta', action='store_true',
                        help='multi-scale + flip test-time augmentation (the config\'s tta_model '
                        'and tta_pipeline)')
    add_runner_args(parser)
    return parse_runner_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error(), checkpoint_trust(args):
        test(merge_test_args(load_config(args.config, args.cfg_options), args))
    return 0


if __name__ == '__main__':
    sys.exit(main())

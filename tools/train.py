"""Train a segmentor or detector from a config (mmseg or mmdet scope).

Example:
    python tools/train.py configs/upernet_replknet31b_ade20k.py \
        --cfg-options model.backbone.init_cfg.checkpoint=weights/RepLKNet-31B_ImageNet-1K_224.pth
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import (add_runner_args, checkpoint_trust, exit_on_user_error, load_config,
                          merge_train_args, parse_runner_args, train)
from mmreplk.apis.resume_hint import resume_hints


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a RepLKNet segmentor or detector')
    parser.add_argument('config', help='config file')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir '
                        'when no file is given')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training (CUDA only)')
    add_runner_args(parser)
    return parse_runner_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A stop (signal, divergence, failed save) names the command that resumes the run; a
    # signal ends the process with 128 + its number.
    with exit_on_user_error(), checkpoint_trust(args), resume_hints():
        train(merge_train_args(load_config(args.config, args.cfg_options), args))
    return 0


if __name__ == '__main__':
    sys.exit(main())

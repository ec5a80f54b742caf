"""Run a model on every image of a folder (and its subfolders).

Segmentation writes <name>_overlay.png and <name>_label.png per image; detection writes a
painted image and a JSON of the predictions. Unreadable files are reported by name and skipped.

Example:
    python tools/infer.py configs/demo/upernet_replknet_tiny_demo.py work_dirs/demo/iter_800.pth \
        data/demo_ade/images/validation --out-dir outputs/demo_infer
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import (MAX_IMAGE_PIXELS, add_trust_arg, checkpoint_trust, exit_on_user_error,
                          infer_folder)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Folder inference with a RepLKNet model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (local)')
    parser.add_argument('input_dir', help='folder of images; subfolders are included')
    parser.add_argument('--out-dir', required=True, help='output folder (mirrors input_dir)')
    parser.add_argument('--device', default='cpu', help='torch device, e.g. cpu or cuda:0')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    parser.add_argument('--max-pixels', type=int, default=MAX_IMAGE_PIXELS,
                        help='skip larger images (width x height) unread, to bound memory '
                        f'(default {MAX_IMAGE_PIXELS})')
    parser.add_argument('--score-thr', type=float,
                        help='detection only: draw detections scoring at least this (default 0.3)')
    add_trust_arg(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Task-specific flags reach the task's predictor only when given.
    options = {} if args.score_thr is None else dict(score_thr=args.score_thr)
    with exit_on_user_error(), checkpoint_trust(args):
        # infer_folder logs the summary line itself.
        infer_folder(args.config, args.checkpoint, args.input_dir, args.out_dir,
                     device=args.device, batch_size=args.batch_size, max_pixels=args.max_pixels,
                     predictor_options=options)
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Plot the training curves of a work dir (every run in it, resumes joined) into one image.

Examples:
    python tools/analysis/plot_curves.py work_dirs/demo_seg --out work_dirs/demo_seg/curves.png
    python tools/analysis/plot_curves.py work_dirs/demo_seg --keys loss decode.acc_seg mIoU \
        --out curves.png

See :mod:`mmreplk.analysis.curves` for what is read.
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.analysis import load_training_curves, plot_training_curves
from mmreplk.apis import exit_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Plot training curves (loss, validation metrics) of a work dir.')
    parser.add_argument('work_dir', help='the --work-dir of a training run')
    parser.add_argument('--keys', nargs='+', metavar='KEY',
                        help='scalars to plot (default: loss and every validation metric)')
    parser.add_argument('--out', help='image to write (default: WORK_DIR/curves.png)')
    parser.add_argument('--title', help='figure title')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        curves = load_training_curves(args.work_dir)
        out = plot_training_curves(curves, args.out or f'{args.work_dir}/curves.png',
                                   keys=args.keys, title=args.title)
    keys = args.keys or curves.default_keys()
    print(f'{out}: {", ".join(keys)} over {len(curves.logs)} run(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

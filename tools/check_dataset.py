"""Read every image and annotation of a config's datasets and list what training would trip on.

Lists files that cannot be read, annotations whose size differs from their image (or boxes
outside it) and labels outside the config's classes; exits with status 1 when it found any.

Example:
    python tools/check_dataset.py configs/demo/upernet_replknet_tiny_demo.py
"""
from __future__ import annotations

import argparse
import sys

from mmreplk.apis import add_config_args, exit_on_user_error, load_config
from mmreplk.datasets.check import check_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Check every file of a config\'s datasets')
    parser.add_argument('config', help='config file')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'],
                        choices=['train', 'val', 'test'], help='datasets to check')
    parser.add_argument('--workers', type=int, help='reading threads (default: one per CPU)')
    add_config_args(parser, checkpoint=False)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        reports = check_dataset(load_config(args.config, args.cfg_options), args.splits,
                                args.workers)
    for report in reports:
        print(report.render())
    return 1 if any(report.problems for report in reports) else 0


if __name__ == '__main__':
    sys.exit(main())

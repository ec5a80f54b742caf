"""Speed benchmarks: whole-model throughput, or a backbone's forward per implementation.

Examples:
    # images/s of the whole model (warm-up, timed runs, median), training and deploy forms
    python tools/benchmark.py configs/upernet_replknet31b_ade20k.py --deploy
    # ms/image of the 31B backbone at 512x512: training form NCHW, deploy form NCHW, deploy
    # form on the optimized path, with the ratios
    python tools/benchmark.py --backbone 31B --shape 512 512
    # the same for UniRepLKNet-T (training form: dilated branches and BNs beside each 13x13)
    python tools/benchmark.py --backbone T --family UniRepLKNet --shape 512 512
"""
from __future__ import annotations

import argparse
import sys

import torch

from mmreplk.analysis import (BACKBONE_FAMILIES, BACKBONE_FORMS, benchmark_backbone,
                              benchmark_model, build_backbone_forms, default_device,
                              profile_forward)
from mmreplk.apis import ToolError, add_config_args, exit_on_user_error, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark a whole model from its config, or a backbone alone.')
    parser.add_argument('config', nargs='?', help='segmentation or detection config')
    parser.add_argument('--backbone', metavar='ARCH',
                        help='benchmark the backbone of this arch instead (RepLKNet: 31B, 31L, '
                        'XL; UniRepLKNet: T, S, ...; see --family)')
    parser.add_argument('--family', default='RepLKNet', choices=list(BACKBONE_FAMILIES),
                        help='--backbone: the backbone family of ARCH (default RepLKNet)')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'),
                        help='image size (default 512 512)')
    parser.add_argument('--deploy', action='store_true',
                        help='whole model: also time the re-parameterized form')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed rounds (default: 2 for a model, 1 for --backbone)')
    parser.add_argument('--runs', type=int, default=None,
                        help='timed rounds, median reported (default: 5 for a model, 3 for '
                        '--backbone)')
    parser.add_argument('--device', default=None, help='torch device (default: cuda if available)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads for torch (default: torch\'s choice, one per core)')
    parser.add_argument('--profile', action='store_true',
                        help='--backbone: also print the costliest ops of each form '
                        '(torch.profiler)')
    add_config_args(parser, checkpoint=False)
    args = parser.parse_args(argv)
    if (args.config is None) == (args.backbone is None):
        parser.error('give either CONFIG or --backbone ARCH')
    if args.config is not None and args.family != 'RepLKNet':
        parser.error('--family goes with --backbone ARCH; a CONFIG names its own backbone')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with exit_on_user_error():
        return _backbone(args) if args.backbone else _model(args)


def _backbone(args: argparse.Namespace) -> int:
    result = benchmark_backbone(args.backbone, args.shape, args.batch_size,
                                warmup=1 if args.warmup is None else args.warmup,
                                runs=3 if args.runs is None else args.runs, device=args.device,
                                family=args.family)
    print(result.table())
    print(f'deploy-auto vs deploy-nchw: {result.speedup("deploy-nchw", "deploy-auto"):.2f}x')
    if args.profile:
        device = torch.device(args.device) if args.device else default_device()
        models = build_backbone_forms(args.backbone, list(BACKBONE_FORMS), device, args.family)
        image = torch.randn(args.batch_size, 3, *args.shape, device=device)
        for name, model in models.items():
            print(f'\n== {name} ==\n{profile_forward(model, image)}')
    return 0


def _model(args: argparse.Namespace) -> int:
    if args.profile:
        raise ToolError('--profile is available with --backbone only')
    cfg = load_config(args.config, args.cfg_options)
    timings = benchmark_model(cfg, args.shape, deploy=args.deploy, batch_size=args.batch_size,
                              warmup=2 if args.warmup is None else args.warmup,
                              runs=5 if args.runs is None else args.runs, device=args.device)
    device = args.device or default_device()
    print(f'{args.config}: {args.shape[0]}x{args.shape[1]}, batch {args.batch_size}, {device}, '
          f'median of {len(timings[0].seconds)} runs')
    for timing in timings:
        print(f'{timing.label:<7} {timing.images_per_s:8.2f} images/s '
              f'({timing.ms_per_image:.1f} ms/image)')
    if len(timings) == 2:
        print(f'deploy vs train: {timings[0].median_s / timings[1].median_s:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())

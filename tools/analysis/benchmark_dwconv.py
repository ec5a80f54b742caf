"""Depth-wise conv speed in the layout of RepLKNet's Table 1 (24 stacked layers, 384 channels).

Examples:
    # the paper's setting, on a GPU: input (64, 384, R, R), K 3/7/13/31, R 16/32/64
    python tools/analysis/benchmark_dwconv.py --device cuda
    # a reduced CPU run (a few minutes on 2 cores)
    python tools/analysis/benchmark_dwconv.py --device cpu --batch-size 1 --resolutions 16 32 \
        --runs 2 --out work_dirs/dwconv_cpu.md
    # with UniRepLKNet-T/S's depth-wise layer at its kernels 3 and 13, training form (dilated
    # branches and BNs) and folded
    python tools/analysis/benchmark_dwconv.py --device cpu --batch-size 1 --resolutions 16 32 \
        --kernel-sizes 3 13 31 --runs 2 --unireplknet --out work_dirs/dwconv_cpu_unireplknet.md

See :mod:`mmreplk.analysis.dwconv_benchmark`; 'auto' is the package's dispatcher, 'nchw' plain
PyTorch. With ``--out``, the table is also drawn beside it (``<out stem>.png``: ms by kernel size,
one line per path, log scale).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from mmengine.logging import MMLogger

from mmreplk.analysis.dwconv_benchmark import (MODES, UNIREPLK_FORMS, benchmark_depthwise,
                                               format_table, unireplk_kernel_sizes)
from mmreplk.analysis.plots import plot_table1
from mmreplk.apis import ToolError, exit_on_user_error
from mmreplk.ops import implementations
from mmreplk.utils.timing import device_name

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
#: The paper's batch on GPU; a CPU pass through 24 layers at K=31 takes seconds per image.
DEFAULT_BATCH = {'cuda': 64, 'cpu': 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time 24 stacked depth-wise convs per implementation (paper Table 1).')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--kernel-sizes', type=int, nargs='+', default=[3, 7, 13, 31])
    parser.add_argument('--resolutions', type=int, nargs='+', default=[16, 32, 64])
    parser.add_argument('--batch-size', type=int,
                        help=f'batch (default: {DEFAULT_BATCH["cuda"]} on cuda, '
                        f'{DEFAULT_BATCH["cpu"]} on cpu)')
    parser.add_argument('--channels', type=int, default=384)
    parser.add_argument('--depth', type=int, default=24, help='stacked layers (default 24)')
    parser.add_argument('--impls', nargs='+', default=['nchw', 'channels_last', 'auto'],
                        choices=implementations())
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    parser.add_argument('--dtype', default='fp32', choices=sorted(DTYPES))
    parser.add_argument('--warmup', type=int, default=1, help='untimed passes per cell')
    parser.add_argument('--runs', type=int, default=3, help='timed passes per cell (median)')
    parser.add_argument('--unireplknet', action='store_true',
                        help='also time UniRepLKNet-T/S\'s depth-wise layer (rows '
                        + ', '.join(UNIREPLK_FORMS) + ') at the --kernel-sizes it uses ('
                        + ', '.join(map(str, unireplk_kernel_sizes())) + ')')
    parser.add_argument('--out', help='also write the table (markdown) to this file')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('benchmark_dwconv')
    with exit_on_user_error():
        device = torch.device(args.device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise ToolError('--device cuda given but torch sees no GPU; use --device cpu')
        if any(k % 2 == 0 for k in args.kernel_sizes):
            raise ToolError(f'--kernel-sizes must be odd, got {args.kernel_sizes}')
        if args.unireplknet and not set(args.kernel_sizes) & set(unireplk_kernel_sizes()):
            raise ToolError(f'--unireplknet times UniRepLKNet\'s kernel sizes '
                            f'{list(unireplk_kernel_sizes())}, none of which is in '
                            f'--kernel-sizes {args.kernel_sizes}; add one')
        batch = args.batch_size or DEFAULT_BATCH.get(device.type, 1)
        logger.info(f'timing {args.depth} depth-wise layers on ({batch}, {args.channels}, R, R) '
                    f'{args.dtype} on {device_name(device)}')
        results = benchmark_depthwise(args.kernel_sizes, args.resolutions, batch, args.channels,
                                      args.depth, args.impls, args.modes, device,
                                      DTYPES[args.dtype], args.warmup, args.runs,
                                      unireplknet=args.unireplknet)
    title = (f'{args.depth} stacked depth-wise layers, input ({batch}, {args.channels}, R, R), '
             f'{args.dtype}, {device_name(device)}, torch {torch.__version__}; '
             'ms per pass, GFLOP/s, speed-up over nchw; (..) = path auto ran')
    table = format_table(results)
    print(f'{title}\n\n{table}')
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure = plot_table1(results, out.with_suffix('.png'),
                             f'{args.depth} depth-wise layers, ({batch}, {args.channels}, R, R), '
                             f'{args.dtype}, {device_name(device)}')
        link = f'\n\n![Table 1, {args.dtype}]({figure.name})' if figure else ''
        out.write_text(f'{title}\n\n{table}{link}\n')
        logger.info(f'table written to {out}' + (f', figure to {figure}' if figure else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())

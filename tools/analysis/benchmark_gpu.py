"""The GPU benchmark in one command: Table-1 depth-wise convs and the RepLKNet-31B backbone,
``impl='auto'`` against PyTorch's own paths, written as markdown as it goes.

Examples:
    # on one GPU (sized for about 6 minutes on an H100 with compilation and tuning; not yet
    # timed on one)
    python tools/analysis/benchmark_gpu.py --out work_dirs/gpu_benchmark.md
    # the reduced form on a CPU (under a minute): tiny backbone, two small Table-1 cells
    python tools/analysis/benchmark_gpu.py --device cpu --quick

See :mod:`mmreplk.analysis.gpu_benchmark` for what each section measures.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch
from mmengine.logging import MMLogger

from mmreplk.apis import ToolError, exit_on_user_error

#: The reduced form: a tiny backbone and two small Table-1 cells (a CPU runs it in seconds).
QUICK = dict(arch=dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 1, 1],
                       channels=[8, 16, 24, 32], small_kernel=5, dw_ratio=1, ffn_ratio=2),
             batch_size=2, size=64, second_size=56,
             table1_cells=(('forward', 8, 13), ('forward_backward', 8, 13)), table1_batch=2,
             table1_channels=8, table1_depth=2, runs=2, budget_s=0.5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmreplk.analysis.gpu_benchmark import SECTIONS
    parser = argparse.ArgumentParser(
        description='Depth-wise conv and RepLKNet backbone speed, auto against PyTorch paths.')
    parser.add_argument('--device', default='cuda', help='cuda (default) or cpu')
    parser.add_argument('--out', help='also write the report (markdown) to this file')
    parser.add_argument('--sections', nargs='+', default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'],
                        choices=['fp32', 'bf16'])
    parser.add_argument('--arch', default='31B', help='backbone arch (default 31B)')
    parser.add_argument('--batch-size', type=int, default=8, help='backbone batch (default 8)')
    parser.add_argument('--size', type=int, default=512, help='backbone image side (default 512)')
    parser.add_argument('--quick', action='store_true',
                        help='reduced form: tiny backbone and Table-1 cells (checks the command)')
    parser.add_argument('--keep-triton-cache', action='store_true',
                        help="reuse Triton's on-disk kernel cache (default: a fresh one, so the "
                        'first-use cost is that of a fresh machine)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    MMLogger.get_instance('benchmark_gpu')
    with exit_on_user_error():
        device = torch.device(args.device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise ToolError('--device cuda given but torch sees no GPU; use --device cpu '
                            '(with --quick for the reduced form)')
        if not args.keep_triton_cache:
            # Read by Triton when it first compiles, which has not happened yet in this process.
            os.environ['TRITON_CACHE_DIR'] = tempfile.mkdtemp(prefix='mmreplk-triton-')
        from mmreplk.analysis.gpu_benchmark import MarkdownReport, run_gpu_benchmark
        options = dict(QUICK) if args.quick else dict(arch=args.arch, batch_size=args.batch_size,
                                                      size=args.size, second_size=args.size - 32)
        run_gpu_benchmark(MarkdownReport(args.out), device, args.sections, args.precisions,
                          **options)
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""The GPU benchmark in one command: Table-1 depth-wise convs and whole backbones,
``impl='auto'`` against PyTorch's own paths, written as markdown (and PNGs beside it) as it goes.

Examples:
    # on one GPU (one part of tools/analysis/gpu_session.sh; each section under its own limit)
    python tools/analysis/benchmark_gpu.py --out work_dirs/gpu_benchmark.md
    # UniRepLKNet-T and S instead of RepLKNet-31B (the last part of gpu_session.sh)
    python tools/analysis/benchmark_gpu.py --sections backbone inference \
        --backbones UniRepLKNet-T UniRepLKNet-S --out work_dirs/unireplknet.md
    # the reduced form on a CPU (under a minute): tiny backbone, two small Table-1 cells
    python tools/analysis/benchmark_gpu.py --device cpu --quick
    # every section and every Table-1 cell at tiny sizes, Triton kernels interpreted on the CPU
    TRITON_INTERPRET=1 python tools/analysis/benchmark_gpu.py --device cpu --dry-run

See :mod:`mmreplk.analysis.gpu_benchmark` for what each section measures. Imports nothing that
needs mmseg, mmdet, pycocotools or ``mmcv.ops`` (the GPU box has none of them).
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
import tempfile

import torch
from mmengine.logging import MMLogger

from mmreplk.analysis.gpu_benchmark import (BACKBONES, SECTIONS, TABLE1_CELLS,
                                            UNIREPLKNET_BACKBONES, backbone_name)
from mmreplk.utils import ToolError

#: A tiny RepLKNet for the reduced forms (a CPU runs a step in well under a second).
TINY_ARCH = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 1, 1], channels=[8, 16, 24, 32],
                 small_kernel=5, dw_ratio=1, ffn_ratio=2)

#: A tiny UniRepLKNet with both of its block kinds (13 with dilated branches, 3 plain).
TINY_UNIREPLKNET = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32],
                        kernel_sizes=[[3], [13], [13, 3], [13]])

#: The tiny arch each backbone family runs in the reduced forms.
TINY_ARCHS = {'RepLKNet': TINY_ARCH, 'UniRepLKNet': TINY_UNIREPLKNET}

#: The rows --backbones selects: name -> (registry type, arch).
BACKBONE_ROWS = {backbone_name(*row): row for row in BACKBONES + UNIREPLKNET_BACKBONES}

#: The reduced form: a tiny backbone and two small Table-1 cells (a CPU runs it in seconds).
QUICK = dict(backbones=[('RepLKNet', TINY_ARCH)], batch_size=2, size=64, second_height=56,
             table1_cells=(('forward', 8, 13), ('forward_backward', 8, 13)), table1_batch=2,
             table1_channels=8, table1_depth=2, runs=2, budget_s=0.5)

#: The dry run: every section and every Table-1 cell of the real run (the real R and K) at the
#: smallest batch, channels and depth, one pass each, the TF32-off table included.
DRY_RUN = dict(backbones=[('RepLKNet', TINY_ARCH)], batch_size=1, size=64, second_height=56,
               table1_cells=TABLE1_CELLS, table1_batch=1, table1_channels=1, table1_depth=1,
               runs=1, budget_s=0.0, table1_warmup=0, table1_runs=1, tf32_off_cell=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Depth-wise conv and backbone speed, auto against PyTorch paths.')
    parser.add_argument('--device', default='cuda', help='cuda (default) or cpu')
    parser.add_argument('--out', help='also write the report (markdown) to this file, and its '
                        'figures (PNG) beside it')
    parser.add_argument('--sections', nargs='+', default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'],
                        choices=['fp32', 'bf16'])
    backbones = parser.add_mutually_exclusive_group()
    backbones.add_argument('--arch', help='time only RepLKNet of this arch (default: every '
                           'backbone of mmreplk.analysis.gpu_benchmark.BACKBONES: '
                           + ', '.join(f'{t}-{a}' for t, a in BACKBONES) + ')')
    backbones.add_argument('--backbones', nargs='+', choices=list(BACKBONE_ROWS),
                           help='the backbone rows to time (default: '
                           + ' '.join(backbone_name(*row) for row in BACKBONES) + '); the '
                           'reduced forms time a tiny backbone of each family named')
    parser.add_argument('--batch-size', type=int, default=8, help='backbone batch (default 8)')
    parser.add_argument('--size', type=int, default=512, help='backbone image side (default 512)')
    form = parser.add_mutually_exclusive_group()
    form.add_argument('--quick', action='store_true',
                      help='reduced form: tiny backbone and Table-1 cells (checks the command)')
    form.add_argument('--dry-run', action='store_true',
                      help='every section and Table-1 cell at tiny sizes, one pass each (on a '
                      'CPU with TRITON_INTERPRET=1: the GPU run rehearsed, Triton launches '
                      'recorded but not run)')
    form.add_argument('--count-compiles', action='store_true',
                      help='print how many Triton compiles the run with these settings makes '
                      '(no GPU needed: launches replayed under TRITON_INTERPRET=1, nothing runs)')
    parser.add_argument('--keep-triton-cache', action='store_true',
                        help="reuse Triton's on-disk kernel cache (default: a fresh one, so the "
                        'first-use cost is that of a fresh machine)')
    return parser.parse_args(argv)


def run_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of run_gpu_benchmark for the chosen form."""
    if args.quick or args.dry_run:
        options = dict(QUICK if args.quick else DRY_RUN)
        if args.backbones:
            families = dict.fromkeys(BACKBONE_ROWS[name][0] for name in args.backbones)
            options['backbones'] = [(family, TINY_ARCHS[family]) for family in families]
        return options
    options = dict(batch_size=args.batch_size, size=args.size)
    if args.arch:
        options['backbones'] = [('RepLKNet', args.arch)]
    elif args.backbones:
        options['backbones'] = [BACKBONE_ROWS[name] for name in args.backbones]
    return options


def count_compiles(args: argparse.Namespace) -> int:
    """Prints the expected Triton compiles of the real run with these settings."""
    os.environ['TRITON_INTERPRET'] = '1'  # replayed launches only; set before triton loads
    if 'triton' in sys.modules:
        raise SystemExit('--count-compiles must set TRITON_INTERPRET=1 before triton is '
                         'imported; run it in a process of its own')
    from mmreplk.analysis.gpu_benchmark import run_gpu_benchmark, second_image_height
    from mmreplk.analysis.triton_compiles import count_compiles as count, gpu_run_calls
    defaults = inspect.signature(run_gpu_benchmark).parameters
    options = {name: param.default for name, param in defaults.items()
               if param.default is not inspect.Parameter.empty}
    options.update(run_options(args))
    calls = gpu_run_calls(args.sections, args.precisions, options['backbones'],
                          options['batch_size'], options['size'],
                          second_image_height(options['size'], options['second_height']),
                          options['table1_cells'], options['table1_batch'],
                          options['table1_channels'])
    print(count(calls).summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('benchmark_gpu')
    if args.count_compiles:
        return count_compiles(args)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        # Not through mmreplk.apis' exit_on_user_error: that package reaches pycocotools.
        logger.error(ToolError('--device cuda given but torch sees no GPU; use --device cpu '
                               '(with --quick or --dry-run for a reduced form)'))
        raise SystemExit(1)
    if not args.keep_triton_cache:
        # Read by Triton when it first compiles, which has not happened yet in this process.
        os.environ['TRITON_CACHE_DIR'] = tempfile.mkdtemp(prefix='mmreplk-triton-')
    from mmreplk.analysis.gpu_benchmark import MarkdownReport, run_gpu_benchmark
    with contextlib.ExitStack() as stack:
        if args.dry_run and os.environ.get('TRITON_INTERPRET', '0') not in ('', '0'):
            # Kernel bodies are the interpreter tests' job; the rehearsal walks every launcher
            # at the real R and K in seconds instead of interpreting each kernel for minutes.
            from mmreplk.analysis.triton_compiles import replaying_launches
            stack.enter_context(replaying_launches())
            logger.info('dry run: Triton launches are recorded, not run (outputs are garbage)')
        failed = run_gpu_benchmark(MarkdownReport(args.out), device, args.sections,
                                   args.precisions, **run_options(args))
    if failed:
        logger.error(f'sections that failed: {failed} (see the report and the traceback above)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

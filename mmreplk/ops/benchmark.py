"""Speed of stacked depth-wise convs per implementation, in the layout of RepLKNet's Table 1.

The paper times 24 stacked depth-wise layers on an input of (64, 384, R, R) for K in {3, 7, 13, 31}
and R in {16, 32, 64}. :func:`benchmark_depthwise` measures the same stack for any set of
implementations of :func:`mmreplk.ops.depthwise_conv2d` ('nchw' is the plain PyTorch reference,
'auto' is what the package runs), forward only and forward + backward.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from .depthwise_conv import IMPLEMENTATIONS, DepthwiseConv2d, select_depthwise_impl

MODES = ('forward', 'forward_backward')


@dataclass(frozen=True)
class DepthwiseTiming:
    """One cell of the table.

    Args:
        kernel_size (int): K.
        resolution (int): R (input is (batch, channels, R, R)).
        impl (str): Implementation requested.
        resolved (str): Implementation that actually ran ('auto' resolved).
        mode (str): 'forward' or 'forward_backward'.
        ms (float): Median wall time of one pass through the whole stack, in milliseconds.
        gflops (float): Achieved GFLOP/s (multiply-add = 2 FLOPs; backward = 2x forward).
    """
    kernel_size: int
    resolution: int
    impl: str
    resolved: str
    mode: str
    ms: float
    gflops: float


def depthwise_stack(channels: int, kernel_size: int, depth: int, impl: str) -> nn.Sequential:
    """``depth`` bias-free depth-wise convs of one kernel size, all running ``impl``.

    Args:
        channels (int): Channels.
        kernel_size (int): Odd kernel side.
        depth (int): Number of layers.
        impl (str): One of :data:`mmreplk.ops.IMPLEMENTATIONS`.

    Returns:
        nn.Sequential: The stack.
    """
    return nn.Sequential(*[DepthwiseConv2d(channels, kernel_size, impl=impl) for _ in range(depth)])


def stack_flops(batch_size: int, channels: int, resolution: int, kernel_size: int, depth: int,
                mode: str) -> float:
    """FLOPs of one pass; the backward (input and weight gradients) counts twice the forward."""
    forward = 2.0 * batch_size * channels * resolution**2 * kernel_size**2 * depth
    return forward * (3 if mode == 'forward_backward' else 1)


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_stack(stack: nn.Module, x: torch.Tensor, mode: str, warmup: int = 1,
               runs: int = 3) -> float:
    """Median milliseconds of one forward (or forward + backward) pass of ``stack`` on ``x``.

    Args:
        stack (nn.Module): Module to time.
        x (torch.Tensor): Its input.
        mode (str): One of :data:`MODES`.
        warmup (int): Untimed passes first (autotuning, caches). Defaults to 1.
        runs (int): Timed passes. Defaults to 3.

    Returns:
        float: Median time in milliseconds.
    """
    if mode not in MODES:
        raise ValueError(f'unknown mode {mode!r}; choose from {MODES}')

    def one_pass() -> None:
        if mode == 'forward':
            with torch.no_grad():
                stack(x)
            return
        for param in stack.parameters():
            param.grad = None
        stack(x).sum().backward()

    times = []
    for index in range(warmup + runs):
        _synchronize(x.device)
        start = time.perf_counter()
        one_pass()
        _synchronize(x.device)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def benchmark_depthwise(kernel_sizes: Sequence[int] = (3, 7, 13, 31),
                        resolutions: Sequence[int] = (16, 32, 64),
                        batch_size: int = 64,
                        channels: int = 384,
                        depth: int = 24,
                        impls: Sequence[str] = ('nchw', 'channels_last', 'auto'),
                        modes: Sequence[str] = MODES,
                        device: str | torch.device = 'cpu',
                        dtype: torch.dtype = torch.float32,
                        warmup: int = 1,
                        runs: int = 3) -> list[DepthwiseTiming]:
    """Times the Table-1 stack for every (mode, R, impl, K).

    Args:
        kernel_sizes (Sequence[int]): K values. Defaults to (3, 7, 13, 31).
        resolutions (Sequence[int]): R values. Defaults to (16, 32, 64).
        batch_size (int): Batch. Defaults to 64 (the paper's GPU setting).
        channels (int): Channels. Defaults to 384.
        depth (int): Stacked layers. Defaults to 24.
        impls (Sequence[str]): Implementations to compare. Defaults to
            ('nchw', 'channels_last', 'auto').
        modes (Sequence[str]): Subset of :data:`MODES`. Defaults to both.
        device (str | torch.device): Device. Defaults to 'cpu'.
        dtype (torch.dtype): Dtype of input and weights. Defaults to torch.float32.
        warmup (int): Untimed passes per cell. Defaults to 1.
        runs (int): Timed passes per cell (median reported). Defaults to 3.

    Returns:
        list[DepthwiseTiming]: One entry per cell.
    """
    device = torch.device(device)
    unknown = [impl for impl in impls if impl not in IMPLEMENTATIONS]
    if unknown:
        raise ValueError(f'unknown impls {unknown}; choose from {IMPLEMENTATIONS}')
    bad_modes = [mode for mode in modes if mode not in MODES]
    if bad_modes:
        raise ValueError(f'unknown modes {bad_modes}; choose from {MODES}')
    results = []
    for mode in modes:
        for resolution in resolutions:
            x = torch.randn(batch_size, channels, resolution, resolution, device=device,
                            dtype=dtype)
            for impl in impls:
                for kernel_size in kernel_sizes:
                    stack = depthwise_stack(channels, kernel_size, depth, impl).to(device, dtype)
                    ms = time_stack(stack, x, mode, warmup=warmup, runs=runs)
                    flops = stack_flops(batch_size, channels, resolution, kernel_size, depth, mode)
                    resolved = (select_depthwise_impl(device, dtype, kernel_size)
                                if impl == 'auto' else impl)
                    results.append(
                        DepthwiseTiming(kernel_size, resolution, impl, resolved, mode, ms,
                                        flops / ms / 1e6))
                    MMLogger.get_current_instance().info(
                        f'{mode} R={resolution} K={kernel_size} {impl}: {ms:.1f} ms')
    return results


def format_table(results: Sequence[DepthwiseTiming], reference: str = 'nchw') -> str:
    """A markdown table in the layout of the paper's Table 1, plus speed-ups and GFLOP/s.

    Args:
        results (Sequence[DepthwiseTiming]): Output of :func:`benchmark_depthwise`.
        reference (str): Implementation the speed-up ratios are relative to. Defaults to 'nchw'.

    Returns:
        str: The table (ms; ``x`` = reference time / this time; GFLOP/s).
    """
    kernel_sizes = sorted({r.kernel_size for r in results})
    cells = {(r.mode, r.resolution, r.impl, r.kernel_size): r for r in results}
    header = '| mode | R | impl | ' + ' | '.join(f'K={k}' for k in kernel_sizes) + ' |'
    lines = [header, '|' + '---|' * (3 + len(kernel_sizes))]
    for mode in [m for m in MODES if any(r.mode == m for r in results)]:
        for resolution in sorted({r.resolution for r in results if r.mode == mode}):
            for impl in dict.fromkeys(r.impl for r in results):
                row = []
                for k in kernel_sizes:
                    cell = cells.get((mode, resolution, impl, k))
                    if cell is None:
                        row.append('-')
                        continue
                    text = f'{cell.ms:.1f} ms, {cell.gflops:.1f} GF/s'
                    ref = cells.get((mode, resolution, reference, k))
                    if ref is not None and impl != reference:
                        text += f', {ref.ms / cell.ms:.2f}x'
                    if cell.resolved != impl:
                        text += f' ({cell.resolved})'
                    row.append(text)
                lines.append(f'| {mode} | {resolution} | {impl} | ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)

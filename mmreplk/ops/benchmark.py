"""Speed of stacked depth-wise convs per implementation, in the layout of RepLKNet's Table 1.

The paper times 24 stacked depth-wise layers on an input of (64, 384, R, R) for K in {3, 7, 13, 31}
and R in {16, 32, 64}. :func:`benchmark_depthwise` measures the same stack for any set of
implementations of :func:`mmreplk.ops.depthwise_conv2d` ('nchw' is the plain PyTorch reference,
'auto' is what the package runs, and for it the path each pass took is reported), forward only
and forward + backward.

Two FLOP counts: the paper's (every one of the K^2 taps of every output, as in its Table 1) and
the valid taps alone (those that land inside the image, what a kernel must really compute: at
K = 31, R = 16 fewer than a third), from which the fraction of a device's peak is given.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from mmreplk.utils.timing import synchronize
from .depthwise_conv import DepthwiseConv2d, implementations
from .dispatch import get_dispatcher

MODES = ('forward', 'forward_backward')

#: Short names of the passes in the per-pass choice of 'auto'.
_PASS_LABELS = {'forward': 'fwd', 'input_grad': 'dx', 'weight_grad': 'dw'}

#: One table cell: (mode, R, K).
Cell = tuple[str, int, int]


@dataclass(frozen=True)
class DepthwiseTiming:
    """One cell of the table.

    Args:
        kernel_size (int): K.
        resolution (int): R (input is (batch, channels, R, R)).
        impl (str): Implementation requested.
        resolved (str): What ran: ``impl``, or for 'auto' the backend of each pass
            (e.g. 'fwd=triton dx=nchw dw=triton').
        mode (str): 'forward' or 'forward_backward'.
        ms (float): Median wall time of one pass through the whole stack, in milliseconds.
        gflops (float): GFLOP/s in the paper's count (every tap; multiply-add = 2 FLOPs;
            backward = 2x forward).
        valid_gflops (float): GFLOP/s counting only the taps inside the image.
    """
    kernel_size: int
    resolution: int
    impl: str
    resolved: str
    mode: str
    ms: float
    gflops: float
    valid_gflops: float


def depthwise_stack(channels: int, kernel_size: int, depth: int, impl: str) -> nn.Sequential:
    """``depth`` bias-free depth-wise convs of one kernel size, all running ``impl``.

    Args:
        channels (int): Channels.
        kernel_size (int): Odd kernel side.
        depth (int): Number of layers.
        impl (str): One of :func:`mmreplk.ops.implementations`.

    Returns:
        nn.Sequential: The stack.
    """
    return nn.Sequential(*[DepthwiseConv2d(channels, kernel_size, impl=impl) for _ in range(depth)])


def stack_flops(batch_size: int, channels: int, resolution: int, kernel_size: int, depth: int,
                mode: str) -> float:
    """FLOPs of one pass in the paper's count (every tap); the backward (input and weight
    gradients) counts twice the forward."""
    forward = 2.0 * batch_size * channels * resolution**2 * kernel_size**2 * depth
    return forward * (3 if mode == 'forward_backward' else 1)


def valid_taps(resolution: int, kernel_size: int) -> int:
    """(output pixel, tap) pairs of an R x R "same" conv whose tap lands inside the image."""
    half = kernel_size // 2
    per_row = sum(min(resolution - 1, o + half) - max(0, o - half) + 1 for o in range(resolution))
    return per_row * per_row


def valid_stack_flops(batch_size: int, channels: int, resolution: int, kernel_size: int,
                      depth: int, mode: str) -> float:
    """FLOPs of one pass counting only the taps inside the image (see :func:`stack_flops`)."""
    forward = 2.0 * batch_size * channels * valid_taps(resolution, kernel_size) * depth
    return forward * (3 if mode == 'forward_backward' else 1)


def time_stack(stack: nn.Module, x: torch.Tensor, mode: str, warmup: int = 1, runs: int = 3,
               budget_s: float | None = None) -> float:
    """Median milliseconds of one forward (or forward + backward) pass of ``stack`` on ``x``.

    Args:
        stack (nn.Module): Module to time.
        x (torch.Tensor): Its input.
        mode (str): One of :data:`MODES`.
        warmup (int): Untimed passes first (autotuning, caches). Defaults to 1.
        runs (int): Timed passes at most. Defaults to 3.
        budget_s (float, optional): Stop timing once the timed passes took this long (at least
            one runs), so the slowest paths cost one pass. Defaults to None (always ``runs``).

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

    for _ in range(warmup):
        one_pass()
    times = []
    while len(times) < runs:
        synchronize(x.device)
        start = time.perf_counter()
        one_pass()
        synchronize(x.device)
        times.append((time.perf_counter() - start) * 1000)
        if budget_s is not None and sum(times) >= 1000 * budget_s:
            break
    return statistics.median(times)


def auto_choices(device: torch.device, dtype: torch.dtype, kernel_size: int, shape: Sequence[int],
                 mode: str) -> str:
    """The backend 'auto' runs for each pass of a conv (after it ran once), e.g.
    'fwd=triton dx=nchw dw=triton'."""
    passes = ('forward', ) if mode == 'forward' else tuple(_PASS_LABELS)
    dispatcher = get_dispatcher()
    return ' '.join(
        f'{_PASS_LABELS[p]}={dispatcher.resolve(p, "auto", device, dtype, kernel_size, tuple(shape))}'
        for p in passes)


def table1_cells(modes: Sequence[str], resolutions: Sequence[int],
                 kernel_sizes: Sequence[int]) -> list[Cell]:
    """Every (mode, R, K) of a full grid."""
    return [(mode, r, k) for mode in modes for r in resolutions for k in kernel_sizes]


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
                        runs: int = 3,
                        cells: Sequence[Cell] | None = None,
                        budget_s: float | None = None,
                        on_result: Callable[['DepthwiseTiming'], None] | None = None
                        ) -> list[DepthwiseTiming]:
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
        runs (int): Timed passes per cell at most (median reported). Defaults to 3.
        cells (Sequence[Cell], optional): The (mode, R, K) cells to time instead of the full grid
            of ``modes`` x ``resolutions`` x ``kernel_sizes``. Defaults to None.
        budget_s (float, optional): Timed seconds per cell after which no further pass starts,
            see :func:`time_stack`. Defaults to None.
        on_result (Callable, optional): Called with each timing as soon as it is measured (a
            report written as it goes keeps what was measured when stopped). Defaults to None.

    Returns:
        list[DepthwiseTiming]: One entry per cell and implementation.
    """
    device = torch.device(device)
    unknown = [impl for impl in impls if impl not in implementations()]
    if unknown:
        raise ValueError(f'unknown impls {unknown}; choose from {implementations()}')
    cells = list(cells) if cells is not None else table1_cells(modes, resolutions, kernel_sizes)
    bad_modes = sorted({mode for mode, _, _ in cells if mode not in MODES})
    if bad_modes:
        raise ValueError(f'unknown modes {bad_modes}; choose from {MODES}')
    logger = MMLogger.get_current_instance()
    results = []
    inputs: dict[int, torch.Tensor] = {}
    for mode, resolution, kernel_size in cells:
        if resolution not in inputs:
            inputs = {resolution: torch.randn(batch_size, channels, resolution, resolution,
                                              device=device, dtype=dtype)}
        x = inputs[resolution]
        for impl in impls:
            stack = depthwise_stack(channels, kernel_size, depth, impl).to(device, dtype)
            ms = time_stack(stack, x, mode, warmup=warmup, runs=runs, budget_s=budget_s)
            del stack
            resolved = (auto_choices(device, dtype, kernel_size, x.shape, mode)
                        if impl == 'auto' else impl)
            flops = stack_flops(batch_size, channels, resolution, kernel_size, depth, mode)
            valid = valid_stack_flops(batch_size, channels, resolution, kernel_size, depth, mode)
            timing = DepthwiseTiming(kernel_size, resolution, impl, resolved, mode, ms,
                                     flops / ms / 1e6, valid / ms / 1e6)
            results.append(timing)
            logger.info(f'{mode} R={resolution} K={kernel_size} {impl}: {ms:.2f} ms'
                        + (f' ({resolved})' if impl == 'auto' else ''))
            if on_result is not None:
                on_result(timing)
    return results


def format_table(results: Sequence[DepthwiseTiming], reference: str = 'nchw',
                 peak_tflops: float | None = None) -> str:
    """A markdown table in the layout of the paper's Table 1, plus speed-ups and FLOP rates.

    Args:
        results (Sequence[DepthwiseTiming]): Output of :func:`benchmark_depthwise`.
        reference (str): Implementation the speed-up ratios are relative to. Defaults to 'nchw'.
        peak_tflops (float, optional): The device's peak, to give valid-tap TFLOP/s as a
            percentage of it; None gives the paper's GFLOP/s instead. Defaults to None.

    Returns:
        str: The table (ms; GFLOP/s or valid-tap TFLOP/s and % of peak; ``x`` = reference time
        / this time; for 'auto' the path of each pass in parentheses).
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
                    if peak_tflops is None:
                        text = f'{cell.ms:.1f} ms, {cell.gflops:.1f} GF/s'
                    else:
                        tflops = cell.valid_gflops / 1e3
                        text = (f'{cell.ms:.2f} ms, {tflops:.2f} TF/s '
                                f'({100 * tflops / peak_tflops:.0f}%)')
                    ref = cells.get((mode, resolution, reference, k))
                    if ref is not None and impl != reference:
                        text += f', {ref.ms / cell.ms:.2f}x'
                    if cell.resolved != impl:
                        text += f' ({cell.resolved})'
                    row.append(text)
                if any(text != '-' for text in row):
                    lines.append(f'| {mode} | {resolution} | {impl} | ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)

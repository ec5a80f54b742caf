"""Speed of stacked depth-wise convs per implementation, in the layout of RepLKNet's Table 1.

The paper times 24 stacked depth-wise layers on an input of (64, 384, R, R) for K in {3, 7, 13, 31}
and R in {16, 32, 64}. :func:`benchmark_depthwise` measures the same stack for any set of
implementations of :func:`mmreplk.ops.depthwise_conv2d` ('nchw' is the plain PyTorch reference,
'auto' is what the package runs, and for it the path each pass took is reported), forward only
and forward + backward.

Every cell is checked on its own: a forced path that cannot run it (the dense-Toeplitz kernel
beyond its pixel limit, say) or that fails while running (out of memory, a kernel error) gives
an ``n/a (reason)`` cell, and the table goes on with the next one.

With ``unireplknet=True``, two more rows per cell at UniRepLKNet-T/S's depth-wise kernels (13 and
3): the layer as UniRepLKNet runs it on ``auto``. 'unireplk-train' is the training form (at 13
the large kernel plus its dilated branches, each with its BN, then the block's BN; at 3 the conv
and its BN; BNs in training mode), 'unireplk-folded' the single biased conv they fold into. Their
FLOP rates count the folded conv's taps, so they compare with the other rows of the column.

Two FLOP counts: the paper's (every one of the K^2 taps of every output, as in its Table 1) and
the valid taps alone (those that land inside the image, what a kernel must really compute: at
K = 31, R = 16 fewer than a third), from which the fraction of a device's peak is given.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from mmreplk.models import UniRepLKNet
from mmreplk.models.layers import UniRepLKNetBlock
from mmreplk.ops import PASSES, DepthwiseConv2d, get_dispatcher, implementations
from mmreplk.utils.timing import time_call

MODES = ('forward', 'forward_backward')

#: The passes of the conv each mode runs.
MODE_PASSES = {'forward': ('forward', ), 'forward_backward': PASSES}

#: Short names of the passes in the per-pass choice of 'auto'.
_PASS_LABELS = {'forward': 'fwd', 'input_grad': 'dx', 'weight_grad': 'dw'}

#: One table cell: (mode, R, K).
Cell = tuple[str, int, int]

#: Rows of UniRepLKNet's depth-wise layer: label -> folded (re-parameterized).
UNIREPLK_FORMS = {'unireplk-train': False, 'unireplk-folded': True}

#: UniRepLKNet's depth-wise path, on which its rows run.
UNIREPLK_IMPL = 'auto'


def unireplk_kernel_sizes(archs: Sequence[str] = ('T', 'S')) -> tuple[int, ...]:
    """The depth-wise kernel sides of UniRepLKNet archs (T and S: 3 and 13), read from their
    arch settings."""
    return tuple(sorted({k for arch in archs
                         for stage in UniRepLKNet.arch_settings[arch]['kernel_sizes']
                         for k in stage}))


@dataclass(frozen=True)
class DepthwiseTiming:
    """One cell of the table, measured or not available.

    Args:
        kernel_size (int): K.
        resolution (int): R (input is (batch, channels, R, R)).
        impl (str): Implementation requested.
        resolved (str): What ran: ``impl``, or for 'auto' the backend of each pass
            (e.g. 'fwd=triton dx=nchw dw=triton').
        mode (str): 'forward' or 'forward_backward'.
        ms (float | None): Median wall time of one pass through the whole stack, in
            milliseconds; None when the cell was not measured.
        gflops (float | None): GFLOP/s in the paper's count (every tap; multiply-add = 2 FLOPs;
            backward = 2x forward); None when not measured.
        valid_gflops (float | None): GFLOP/s counting only the taps inside the image; None when
            not measured.
        unavailable (str | None): Why the cell was not measured (the path cannot run it, or it
            failed); None for a measured cell. Defaults to None.
    """
    kernel_size: int
    resolution: int
    impl: str
    resolved: str
    mode: str
    ms: float | None
    gflops: float | None
    valid_gflops: float | None
    unavailable: str | None = None


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


def unireplk_stack(channels: int, kernel_size: int, depth: int, folded: bool,
                   impl: str = UNIREPLK_IMPL) -> nn.Sequential:
    """``depth`` depth-wise layers of UniRepLKNet's block (its ``dwconv`` and ``norm``), in
    training form (BNs in training mode) or folded into one biased conv each.

    The layers are taken from :class:`~mmreplk.models.layers.UniRepLKNetBlock`, which decides
    what runs beside a kernel of this size and how it folds.

    Args:
        channels (int): Channels.
        kernel_size (int): Kernel side UniRepLKNet supports (3, 5, 7..17 odd).
        depth (int): Number of layers.
        folded (bool): Re-parameterize each layer.
        impl (str): Implementation of the depth-wise convs the op runs. Defaults to 'auto'.

    Returns:
        nn.Sequential: The stack.
    """
    layers = []
    for _ in range(depth):
        block = UniRepLKNetBlock(channels, kernel_size, dwconv_impl=impl)
        if folded:
            block.reparameterize()
        layers.append(nn.Sequential(block.dwconv, block.norm))
    return nn.Sequential(*layers).train(not folded)


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
    times: list[float] = []
    while len(times) < runs:
        times.append(1000 * time_call(one_pass, x.device))
        if budget_s is not None and sum(times) >= 1000 * budget_s:
            break
    return statistics.median(times)


def auto_choices(device: torch.device, dtype: torch.dtype, kernel_size: int, shape: Sequence[int],
                 mode: str) -> str:
    """The backend 'auto' runs for each pass of a conv (after it ran once), e.g.
    'fwd=triton dx=nchw dw=triton'."""
    resolve, shape = get_dispatcher().resolve, tuple(shape)
    return ' '.join(f'{_PASS_LABELS[p]}={resolve(p, "auto", device, dtype, kernel_size, shape)}'
                    for p in MODE_PASSES[mode])


def is_triton_backend(impl: str) -> bool:
    """Whether a registered backend runs our Triton kernels rather than PyTorch's own paths (by
    the names of its classes and their modules); False for 'auto'."""
    if impl == 'auto':
        return False
    backend = type(get_dispatcher().backend(impl))
    return any('triton' in f'{cls.__module__}.{cls.__name__}'.lower() for cls in backend.__mro__)


def cell_unsupported(impl: str, mode: str, device: torch.device, dtype: torch.dtype,
                     kernel_size: int, shape: Sequence[int],
                     skip_what_auto_skips: Sequence[str] = ()) -> str | None:
    """Why a forced ``impl`` cannot run some pass of this cell, or None when it can.

    Asked per cell, not once per path: a kernel may cover small maps only. 'auto' can always
    run (PyTorch's own paths are among its candidates).

    Args:
        impl (str): One of :func:`mmreplk.ops.implementations`.
        mode (str): One of :data:`MODES`.
        device (torch.device): Device of the cell.
        dtype (torch.dtype): Dtype of the cell.
        kernel_size (int): K.
        shape (Sequence[int]): Input (N, C, R, R).
        skip_what_auto_skips (Sequence[str]): Paths not timed where ``auto`` would measure
            none of their passes (:meth:`~mmreplk.ops.DepthwiseBackend.auto_skip`: measured
            slower or outside the accuracy bounds), to spend a short GPU slot on the paths
            that can win. Defaults to none.

    Returns:
        str | None: E.g. 'forward: triton_toeplitz does not cover ...'.
    """
    if impl == 'auto':
        return None
    backend = get_dispatcher().backend(impl)
    args = (device, dtype, kernel_size, tuple(shape))
    for pass_name in MODE_PASSES[mode]:
        why = backend.unsupported(pass_name, *args)
        if why is not None:
            return f'{pass_name}: {why}'
    if impl in skip_what_auto_skips:
        # Left out only where auto would run none of its passes (one pass may be skipped for
        # sharing another path's kernel while the others are still worth timing).
        skips = {p: backend.auto_skip(p, *args) for p in MODE_PASSES[mode]}
        if all(skips.values()):
            return f'not timed, auto skips it: {"; ".join(dict.fromkeys(skips.values()))}'
    return None


def _failure(error: BaseException) -> str:
    if isinstance(error, torch.OutOfMemoryError):
        return 'out of memory'
    lines = str(error).strip().splitlines()
    return f'failed: {type(error).__name__}' + (f': {lines[0][:160]}' if lines else '')


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
                        on_result: Callable[['DepthwiseTiming'], None] | None = None,
                        skip_what_auto_skips: Sequence[str] = (),
                        unireplknet: bool = False) -> list[DepthwiseTiming]:
    """Times the Table-1 stack for every (mode, R, impl, K).

    A cell a forced path cannot run (see :func:`cell_unsupported`) or that raises while it runs
    is returned unmeasured with the reason (logged with its traceback), and the next cell runs.

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
        skip_what_auto_skips (Sequence[str]): See :func:`cell_unsupported`. Defaults to none.
        unireplknet (bool): Also time the rows of :data:`UNIREPLK_FORMS` at the cells whose K
            is one of :func:`unireplk_kernel_sizes` (see the module docstring). Defaults to
            False.

    Returns:
        list[DepthwiseTiming]: One entry per cell and implementation (and UniRepLKNet form).
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
    unireplk = unireplk_kernel_sizes() if unireplknet else ()
    for mode, resolution, kernel_size in cells:
        shape = (batch_size, channels, resolution, resolution)
        rows = {impl: (impl, None) for impl in impls}
        if kernel_size in unireplk:
            rows.update({label: (UNIREPLK_IMPL, folded)
                         for label, folded in UNIREPLK_FORMS.items()})
        for label, (impl, folded) in rows.items():
            why = cell_unsupported(impl, mode, device, dtype, kernel_size, shape,
                                   skip_what_auto_skips if folded is None else ())
            timing = None
            if why is None:
                try:
                    timing = _time_cell(mode, resolution, kernel_size, impl, shape, depth,
                                        device, dtype, warmup, runs, budget_s, label, folded)
                except Exception as error:  # a failing cell must not end the table
                    why = _failure(error)
                    logger.exception(f'{mode} R={resolution} K={kernel_size} {label}: {why}')
                    if device.type == 'cuda':
                        torch.cuda.empty_cache()
            if timing is None:
                timing = DepthwiseTiming(kernel_size, resolution, label, label, mode, None, None,
                                         None, why)
                logger.info(f'{mode} R={resolution} K={kernel_size} {label}: n/a ({why})')
            else:
                logger.info(f'{mode} R={resolution} K={kernel_size} {label}: {timing.ms:.2f} ms'
                            + (f' ({timing.resolved})' if impl == 'auto' else ''))
            results.append(timing)
            if on_result is not None:
                on_result(timing)
    return results


def _time_cell(mode: str, resolution: int, kernel_size: int, impl: str, shape: tuple[int, ...],
               depth: int, device: torch.device, dtype: torch.dtype, warmup: int, runs: int,
               budget_s: float | None, label: str, folded: bool | None) -> DepthwiseTiming:
    # ``folded`` None: the plain Table-1 stack on ``impl``; else a UniRepLKNet row (``label``).
    batch_size, channels = shape[:2]
    x = torch.randn(*shape, device=device, dtype=dtype)
    stack = (depthwise_stack(channels, kernel_size, depth, impl) if folded is None else
             unireplk_stack(channels, kernel_size, depth, folded, impl)).to(device, dtype)
    ms = time_stack(stack, x, mode, warmup=warmup, runs=runs, budget_s=budget_s)
    resolved = (auto_choices(device, dtype, kernel_size, shape, mode) if impl == 'auto' else impl)
    flops = stack_flops(batch_size, channels, resolution, kernel_size, depth, mode)
    valid = valid_stack_flops(batch_size, channels, resolution, kernel_size, depth, mode)
    return DepthwiseTiming(kernel_size, resolution, label, resolved, mode, ms, flops / ms / 1e6,
                           valid / ms / 1e6)


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
        / this time; for 'auto' the path of each pass in parentheses; ``n/a (reason)`` for a
        cell not measured).
    """
    kernel_sizes = sorted({r.kernel_size for r in results})
    cells = {(r.mode, r.resolution, r.impl, r.kernel_size): r for r in results}
    header = '| mode | R | impl | ' + ' | '.join(f'K={k}' for k in kernel_sizes) + ' |'
    lines = [header, '|' + '---|' * (3 + len(kernel_sizes))]
    for mode in [m for m in MODES if any(r.mode == m for r in results)]:
        for resolution in sorted({r.resolution for r in results if r.mode == mode}):
            for impl in dict.fromkeys(r.impl for r in results):
                row = [_cell_text(cells.get((mode, resolution, impl, k)),
                                  cells.get((mode, resolution, reference, k)), reference,
                                  peak_tflops) for k in kernel_sizes]
                if any(text != '-' for text in row):
                    lines.append(f'| {mode} | {resolution} | {impl} | ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def _cell_text(cell: DepthwiseTiming | None, ref: DepthwiseTiming | None, reference: str,
               peak_tflops: float | None) -> str:
    if cell is None:
        return '-'
    if cell.ms is None:
        return f'n/a ({cell.unavailable})'
    if peak_tflops is None:
        text = f'{cell.ms:.1f} ms, {cell.gflops:.1f} GF/s'
    else:
        tflops = cell.valid_gflops / 1e3
        text = f'{cell.ms:.2f} ms, {tflops:.2f} TF/s ({100 * tflops / peak_tflops:.0f}%)'
    if ref is not None and ref.ms is not None and cell.impl != reference:
        text += f', {ref.ms / cell.ms:.2f}x'
    if cell.resolved != cell.impl:
        text += f' ({cell.resolved})'
    return text

"""The one GPU benchmark: depth-wise convs in the paper's Table-1 layout and the RepLKNet-31B
backbone, ``impl='auto'`` against PyTorch's own paths, written as a markdown report as it goes.

Sections (each appended to the report the moment it is measured, so a time limit keeps what was
measured so far):

* ``backbone``: the 31B backbone's train step (forward + backward, batch 8 at 512 x 512) in
  fp32 and under bf16 autocast, images/s and peak memory for ``auto`` and ``nchw`` (the path of
  the authors' released code: plain depth-wise ``nn.Conv2d`` on NCHW tensors), the first-use cost
  of ``auto`` (Triton compilation + autotuning + the dispatcher's measurements) at that
  resolution, and a second resolution in the same buckets, which must measure nothing;
* ``inference``: the folded (deploy) backbone's forward, images/s, ``auto`` against ``nchw``;
* ``table1``: 24 stacked depth-wise layers on (64, 384, R, R) for the cells of
  :data:`TABLE1_CELLS`, fp32 and bf16, every path, with valid-tap TFLOP/s, the percentage of
  the device's FP32 peak and what ``auto`` chose per pass.

Only :mod:`mmreplk.ops` and :mod:`mmreplk.models` are needed (no mmseg / mmdet), so it runs on a
GPU box that has torch, mmengine and the Python part of mmcv.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from mmreplk.models import RepLKNet, reparameterize
from mmreplk.ops import (DepthwiseDispatcher, autotune_entries, get_dispatcher, implementations,
                         set_depthwise_impl, use_dispatcher)
from mmreplk.ops.benchmark import Cell, benchmark_depthwise, format_table
from mmreplk.utils.timing import device_name, synchronize

#: The paper's Table-1 cells timed: (mode, R, K).
TABLE1_CELLS: tuple[Cell, ...] = (
    ('forward', 16, 31), ('forward', 32, 31), ('forward', 64, 31), ('forward', 64, 13),
    ('forward', 32, 7), ('forward_backward', 16, 31), ('forward_backward', 32, 31),
    ('forward_backward', 32, 13))

#: FP32 CUDA-core peak (TFLOP/s, dense, boost clock) of GPUs by a part of their name.
FP32_PEAK_TFLOPS = {'H200': 66.9, 'H100': 66.9, 'A100': 19.5, 'L40S': 91.6, 'RTX 4090': 82.6,
                    'A10G': 31.2, 'V100': 15.7}

SECTIONS = ('backbone', 'inference', 'table1')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def fp32_peak_tflops(device: torch.device) -> float | None:
    """The FP32 CUDA-core peak of a known GPU, or None (CPUs, unknown GPUs)."""
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for part, peak in FP32_PEAK_TFLOPS.items() if part in name), None)


def describe_device(device: torch.device) -> str:
    """The device and the software that ran on it, in one line."""
    parts = [device_name(device), f'torch {torch.__version__}']
    if device.type == 'cuda':
        parts.append(f'CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}')
        with contextlib.suppress(ImportError):
            import triton
            parts.append(f'Triton {triton.__version__}')
        parts.append(f'TF32 for fp32 convs {"on" if torch.backends.cudnn.allow_tf32 else "off"}')
    return ', '.join(parts)


class MarkdownReport:
    """Markdown written to stdout and a file as it is produced.

    Args:
        path (str, optional): File to append to (created with its folder). Defaults to None.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = path
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            open(path, 'w').close()

    def write(self, text: str = '') -> None:
        """Appends ``text`` and a newline, flushed at once."""
        print(text, flush=True)
        if self.path is not None:
            with open(self.path, 'a') as file:
                file.write(text + '\n')


@dataclasses.dataclass(frozen=True)
class StepResult:
    """Timed steps of one backbone setting.

    Args:
        label (str): What ran (path and precision).
        images_per_s (float): At the median step time.
        peak_gib (float | None): Peak GPU memory of a steady step; None on CPUs.
        first_s (float): The first step's time (compilation, tuning, measuring included).
        median_s (float): Median time of the later steps.
    """
    label: str
    images_per_s: float
    peak_gib: float | None
    first_s: float
    median_s: float


def time_steps(step: Callable[[], object], device: torch.device, batch_size: int,
               label: str, runs: int = 5) -> StepResult:
    """Runs ``step`` once (first use) and ``runs`` more times, with the peak memory of those.

    Args:
        step (Callable[[], object]): One step.
        device (torch.device): Device to synchronize and read memory from.
        batch_size (int): Images per step.
        label (str): Name of the setting.
        runs (int): Steady steps timed. Defaults to 5.

    Returns:
        StepResult: The timings.
    """
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - start
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else None
    median = statistics.median(times)
    return StepResult(label, batch_size / median, peak, first, median)


def train_step(model: nn.Module, images: torch.Tensor,
               autocast_dtype: torch.dtype | None) -> Callable[[], object]:
    """One forward + backward of a backbone on ``images`` (gradients reset each time)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            outs = model(images)
            loss = sum(out.float().mean() for out in outs)
        loss.backward()

    return step


def inference_step(model: nn.Module, images: torch.Tensor) -> Callable[[], object]:
    """One forward of a backbone in eval mode without gradients."""

    def step() -> None:
        with torch.no_grad():
            model(images)

    return step


def _row(result: StepResult, reference: StepResult | None) -> str:
    memory = '-' if result.peak_gib is None else f'{result.peak_gib:.1f}'
    ratio = '-' if reference is None else f'{result.images_per_s / reference.images_per_s:.2f}x'
    return (f'| {result.label} | {result.images_per_s:.1f} | {ratio} | {memory} | '
            f'{result.first_s:.1f} | {1e3 * result.median_s:.0f} |')


STEP_HEADER = ('| setting | images/s | vs nchw | peak memory (GiB) | first step (s) | '
               'steady step (ms) |\n|---|---|---|---|---|---|')


@contextlib.contextmanager
def fresh_dispatcher() -> Iterator[DepthwiseDispatcher]:
    """A dispatcher that has measured nothing yet (no disk cache), for first-use costs."""
    with use_dispatcher(DepthwiseDispatcher(cache_file='')) as dispatcher:
        yield dispatcher


def benchmark_backbone_steps(report: MarkdownReport, device: torch.device, arch: str | dict,
                             batch_size: int, size: int, second_size: int,
                             precisions: Sequence[str], runs: int) -> None:
    """The ``backbone`` section: train steps of ``auto`` and ``nchw`` per precision."""
    for precision in precisions:
        autocast = None if precision == 'fp32' else DTYPES[precision]
        torch.manual_seed(0)
        model = RepLKNet(arch=arch, drop_path_rate=0.0).to(device).train()
        images = torch.randn(batch_size, 3, size, size, device=device)
        report.write(f'\n### Train step, {precision}{" autocast" if autocast else ""}, '
                     f'batch {batch_size} x {size}x{size}\n')
        report.write(STEP_HEADER)
        set_depthwise_impl(model, 'nchw')
        nchw = time_steps(train_step(model, images, autocast), device, batch_size, 'nchw', runs)
        report.write(_row(nchw, None))
        set_depthwise_impl(model, 'auto')
        with fresh_dispatcher() as dispatcher:
            tunings = autotune_entries()
            auto = time_steps(train_step(model, images, autocast), device, batch_size, 'auto',
                              runs)
            report.write(_row(auto, nchw))
            measured, tunings = dispatcher.measurements, autotune_entries() - tunings
            report.write(f'\nFirst use of `auto` at {size}x{size}: '
                         f'{auto.first_s - auto.median_s:.1f} s over a steady step '
                         f'({measured} buckets measured, {tunings} Triton tunings).')
            other = torch.randn(batch_size, 3, second_size, second_size, device=device)
            before, tunings = dispatcher.measurements, autotune_entries()
            again = time_steps(train_step(model, other, autocast), device, batch_size,
                               f'auto {second_size}', runs=2)
            report.write(f'A new size in the same buckets ({second_size}x{second_size}): '
                         f'{dispatcher.measurements - before} buckets measured, '
                         f'{autotune_entries() - tunings} Triton tunings, first step '
                         f'{again.first_s:.2f} s against {again.median_s:.2f} s steady.')
            report.write(f'\nWhat `auto` chose ({precision}):\n\n{dispatcher.table()}')
        del model, images


def benchmark_inference(report: MarkdownReport, device: torch.device, arch: str | dict,
                        batch_size: int, size: int, runs: int) -> None:
    """The ``inference`` section: the folded backbone, ``auto`` against ``nchw``, fp32."""
    torch.manual_seed(0)
    model = reparameterize(RepLKNet(arch=arch, drop_path_rate=0.0)).to(device).eval()
    images = torch.randn(batch_size, 3, size, size, device=device)
    report.write(f'\n### Folded (deploy) backbone inference, fp32, batch {batch_size} x '
                 f'{size}x{size}\n')
    report.write(STEP_HEADER)
    set_depthwise_impl(model, 'nchw')
    nchw = time_steps(inference_step(model, images), device, batch_size, 'nchw', runs)
    report.write(_row(nchw, None))
    set_depthwise_impl(model, 'auto')
    with fresh_dispatcher():
        report.write(_row(time_steps(inference_step(model, images), device, batch_size, 'auto',
                                     runs), nchw))


def benchmark_table1(report: MarkdownReport, device: torch.device, cells: Sequence[Cell],
                     precisions: Sequence[str], batch_size: int, channels: int, depth: int,
                     budget_s: float) -> None:
    """The ``table1`` section: every path on each cell, per precision; on a GPU also the first
    cell in fp32 with TF32 off (``torch.backends.cudnn.allow_tf32 = False``: fp32-accurate)."""
    impls = [name for name in implementations()[1:] if name != 'cpu' or device.type == 'cpu']
    impls.append('auto')
    peak = fp32_peak_tflops(device)
    runs = [(precision, cells, True) for precision in precisions]
    if device.type == 'cuda' and 'fp32' in precisions:
        runs.append(('fp32', cells[:1], False))
    for precision, run_cells, tf32 in runs:
        runnable = [impl for impl in impls if impl == 'auto' or get_dispatcher().backend(
            impl).unsupported('forward', device, DTYPES[precision], 31,
                              (batch_size, channels, 16, 16)) is None]
        previous = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = tf32 and previous
        try:
            _table1_precision(report, device, run_cells, precision, runnable, batch_size,
                              channels, depth, budget_s, peak)
        finally:
            torch.backends.cudnn.allow_tf32 = previous


def _table1_precision(report: MarkdownReport, device: torch.device, cells: Sequence[Cell],
                      precision: str, impls: Sequence[str], batch_size: int, channels: int,
                      depth: int, budget_s: float, peak: float | None) -> None:
    tf32 = ('' if precision != 'fp32' or device.type != 'cuda' else
            ', TF32 on' if torch.backends.cudnn.allow_tf32 else ', TF32 off (fp32-accurate)')
    report.write(f'\n### {depth} stacked depth-wise layers, ({batch_size}, {channels}, R, R), '
                 f'{precision}{tf32}\n')
    report.write('ms per pass; TF/s counts the valid taps only'
                 + (f', % of the {peak} TFLOP/s FP32 peak' if peak else '')
                 + '; speed-up over nchw; (...) what auto ran per pass\n')
    results = benchmark_depthwise(batch_size=batch_size, channels=channels, depth=depth,
                                  impls=impls, device=device, dtype=DTYPES[precision],
                                  cells=cells, budget_s=budget_s,
                                  on_result=lambda t: report.write(
                                      f'<!-- {t.mode} R={t.resolution} K={t.kernel_size} '
                                      f'{t.impl}: {t.ms:.2f} ms ({t.resolved}) -->'))
    report.write('\n' + format_table(results, peak_tflops=peak))


def run_gpu_benchmark(report: MarkdownReport,
                      device: str | torch.device = 'cuda',
                      sections: Sequence[str] = SECTIONS,
                      precisions: Sequence[str] = ('fp32', 'bf16'),
                      arch: str | dict = '31B',
                      batch_size: int = 8,
                      size: int = 512,
                      second_size: int = 480,
                      table1_cells: Sequence[Cell] = TABLE1_CELLS,
                      table1_batch: int = 64,
                      table1_channels: int = 384,
                      table1_depth: int = 24,
                      runs: int = 5,
                      budget_s: float = 2.0) -> None:
    """Runs the benchmark sections into ``report``.

    Args:
        report (MarkdownReport): Where the figures go, as they are measured.
        device (str | torch.device): Device. Defaults to 'cuda'.
        sections (Sequence[str]): Subset of :data:`SECTIONS`, run in this order.
            Defaults to all.
        precisions (Sequence[str]): 'fp32' and/or 'bf16'. Defaults to both.
        arch (str | dict): Backbone arch. Defaults to '31B'.
        batch_size (int): Backbone batch. Defaults to 8.
        size (int): Backbone image side. Defaults to 512.
        second_size (int): A second image side in the same buckets. Defaults to 480.
        table1_cells (Sequence[Cell]): Table-1 cells. Defaults to :data:`TABLE1_CELLS`.
        table1_batch (int): Table-1 batch. Defaults to 64.
        table1_channels (int): Table-1 channels. Defaults to 384.
        table1_depth (int): Table-1 stacked layers. Defaults to 24.
        runs (int): Steady steps timed per backbone setting. Defaults to 5.
        budget_s (float): Timed seconds per Table-1 cell after which no further pass starts.
            Defaults to 2.0.
    """
    device = torch.device(device)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f'unknown sections {unknown}; choose from {SECTIONS}')
    unknown = [p for p in precisions if p not in DTYPES]
    if unknown:
        raise ValueError(f'unknown precisions {unknown}; choose from {sorted(DTYPES)}')
    arch_name = arch if isinstance(arch, str) else 'custom'
    report.write(f'## mmreplk GPU benchmark, {datetime.date.today().isoformat()}\n')
    report.write(f'{describe_device(device)}\n')
    for section in sections:
        start = time.perf_counter()
        if section == 'backbone':
            report.write(f'\n## RepLKNet-{arch_name} backbone train step')
            benchmark_backbone_steps(report, device, arch, batch_size, size, second_size,
                                     precisions, runs)
        elif section == 'inference':
            benchmark_inference(report, device, arch, batch_size, size, runs)
        else:
            report.write('\n## Paper Table-1 layout')
            benchmark_table1(report, device, table1_cells, precisions, table1_batch,
                             table1_channels, table1_depth, budget_s)
        report.write(f'\n<!-- section {section}: {time.perf_counter() - start:.0f} s -->')

"""The one GPU benchmark: depth-wise convs in the paper's Table-1 layout and whole backbones,
``impl='auto'`` against PyTorch's own paths, written as a markdown report as it goes.

Sections (each line is appended to the report the moment it is known, so a time limit or a kill
keeps what was measured so far):

* ``backbone``: per backbone of :data:`BACKBONES` (RepLKNet-31B by default; UniRepLKNet-T/S,
  :data:`UNIREPLKNET_BACKBONES`, on request, in training form with its dilated branches), the
  train step
  (forward + backward, batch 8 at 512 x 512) in fp32 and under bf16 autocast, images/s and peak
  memory for ``auto`` and ``nchw`` (the path of the authors' released code: plain depth-wise
  ``nn.Conv2d`` on NCHW tensors), the first-use cost of ``auto`` (Triton compilation +
  autotuning + the dispatcher's measurements) at that resolution, and a second image height in
  the same buckets, which must measure nothing (what it did measure is listed);
* ``inference``: the folded (deploy) backbone's forward, images/s, ``auto`` against ``nchw``;
* ``table1``: 24 stacked depth-wise layers on (64, 384, R, R) for the cells of
  :data:`TABLE1_CELLS`, fp32 and bf16, every path, with valid-tap TFLOP/s, the percentage of
  the device's FP32 peak and what ``auto`` chose per pass; on a GPU also the first cell with
  fp32 convs kept off TF32. Each cell is checked on its own: a path that cannot run it or fails
  on it gives ``n/a (reason)``.

With a report file, each table is also drawn as a PNG beside it (:mod:`.plots`).

Only :mod:`mmreplk.ops` and :mod:`mmreplk.models` are needed (no mmseg / mmdet / pycocotools /
``mmcv.ops``), so it runs on a GPU box that has torch, Triton, mmengine and mmcv-lite.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from mmengine.logging import MMLogger
from mmengine.registry import MODELS
from torch import nn

from mmreplk.models import reparameterize
from mmreplk.ops import (DepthwiseDispatcher, autotune_entries, fp32_convs_use_tf32,
                         implementations, set_depthwise_impl, use_dispatcher)
from mmreplk.utils.timing import device_name, synchronize, time_call
from .dwconv_benchmark import (Cell, DepthwiseTiming, benchmark_depthwise, format_table,
                               is_triton_backend)
from .plots import plot_steps, plot_table1

#: Backbones timed by default: (registry type, arch).
BACKBONES: tuple[tuple[str, str | dict], ...] = (('RepLKNet', '31B'), )

#: UniRepLKNet rows, timed on request (their own part of tools/analysis/gpu_session.sh, so the
#: default run's time limits stay as they were).
UNIREPLKNET_BACKBONES: tuple[tuple[str, str | dict], ...] = (('UniRepLKNet', 'T'),
                                                              ('UniRepLKNet', 'S'))

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
        parts.append(f'TF32 for fp32 convs {"on" if fp32_convs_use_tf32() else "off"}')
    return ', '.join(parts)


@contextlib.contextmanager
def fp32_convs_on_tf32(enabled: bool) -> Iterator[None]:
    """Lets fp32 convs (PyTorch's and ours) use TF32 tensor cores, or keeps them fp32-accurate,
    inside the block; the previous setting is restored after it.

    Set through ``torch.backends.cudnn.conv.fp32_precision`` where torch has it (the legacy
    ``allow_tf32`` raises once the conv and RNN settings differ), else through ``allow_tf32``.

    Args:
        enabled (bool): True for TF32, False for fp32-accurate ('ieee').
    """
    conv = getattr(torch.backends.cudnn, 'conv', None)
    if getattr(conv, 'fp32_precision', None) is not None:
        owner, name, value = conv, 'fp32_precision', 'tf32' if enabled else 'ieee'
    else:
        owner, name, value = torch.backends.cudnn, 'allow_tf32', enabled
    previous = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, previous)


class MarkdownReport:
    """Markdown written to stdout and a file as it is produced, line by line.

    Args:
        path (str | os.PathLike, optional): File to write (created with its folder, emptied
            first). Defaults to None (stdout only).
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text('')

    def write(self, text: str = '') -> None:
        """Appends ``text`` and a newline, flushed at once."""
        print(text, flush=True)
        if self.path is not None:
            with open(self.path, 'a') as file:
                file.write(text + '\n')

    def figure_path(self, name: str) -> Path | None:
        """Where a figure of this report goes: ``<report stem>_<name>.png`` beside it (just
        ``<name>.png`` where the stem already starts the name, e.g. table1.md ->
        table1_fp32.png), or None for a report without a file."""
        if self.path is None:
            return None
        stem = self.path.stem
        return self.path.with_name(f'{name if name.startswith(stem) else f"{stem}_{name}"}.png')

    def add_figure(self, written: Path | None, caption: str) -> None:
        """Links a PNG just written (no-op for None) into the report."""
        if written is not None:
            self.write(f'\n![{caption}]({written.name})')


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
    first = time_call(step, device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = [time_call(step, device) for _ in range(runs)]
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


def build_backbone(backbone_type: str, arch: str | dict, device: torch.device) -> nn.Module:
    """A registered backbone with stochastic depth off, built from its (type, arch).

    Args:
        backbone_type (str): Registry type, e.g. 'RepLKNet'.
        arch (str | dict): Its arch name or arch dict.
        device (torch.device): Device to put it on.

    Returns:
        nn.Module: The backbone.
    """
    torch.manual_seed(0)
    return MODELS.build(dict(type=backbone_type, arch=arch, drop_path_rate=0.0)).to(device)


def backbone_name(backbone_type: str, arch: str | dict) -> str:
    """E.g. 'RepLKNet-31B' ('custom' for an arch dict)."""
    return f'{backbone_type}-{arch if isinstance(arch, str) else "custom"}'


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


def benchmark_backbone_steps(report: MarkdownReport, device: torch.device,
                             backbones: Sequence[tuple[str, str | dict]], batch_size: int,
                             size: int, second_height: int, precisions: Sequence[str],
                             runs: int) -> list[tuple[str, float]]:
    """The ``backbone`` section: train steps of ``auto`` and ``nchw`` per backbone and precision.

    Returns:
        list[tuple[str, float]]: (setting, images/s) of every step timed, for the figure.
    """
    rows = []
    for backbone_type, arch in backbones:
        name = backbone_name(backbone_type, arch)
        # Built once for every precision: a step leaves the weights as they were (no optimizer)
        # and frees the previous step's gradients before its own, outside the peak measured.
        model = build_backbone(backbone_type, arch, device).train()
        images = torch.randn(batch_size, 3, size, size, device=device)
        for precision in precisions:
            autocast = None if precision == 'fp32' else DTYPES[precision]
            report.write(f'\n### {name} train step, {precision}'
                         f'{" autocast" if autocast else ""}, batch {batch_size} x {size}x{size}\n')
            report.write(STEP_HEADER)
            set_depthwise_impl(model, 'nchw')
            nchw = time_steps(train_step(model, images, autocast), device, batch_size, 'nchw',
                              runs)
            report.write(_row(nchw, None))
            rows.append((f'{name} {precision} nchw', nchw.images_per_s))
            set_depthwise_impl(model, 'auto')
            with fresh_dispatcher() as dispatcher:
                _first_use_and_second_height(report, device, dispatcher, model, images, autocast,
                                             nchw, second_height, runs, precision, rows, name)
        del model, images
    return rows


def _first_use_and_second_height(report: MarkdownReport, device: torch.device,
                                 dispatcher: DepthwiseDispatcher, model: nn.Module,
                                 images: torch.Tensor, autocast: torch.dtype | None,
                                 nchw: StepResult, second_height: int, runs: int,
                                 precision: str, rows: list[tuple[str, float]],
                                 name: str) -> None:
    batch_size, _, size, width = images.shape
    tunings = autotune_entries()
    auto = time_steps(train_step(model, images, autocast), device, batch_size, 'auto', runs)
    report.write(_row(auto, nchw))
    rows.append((f'{name} {precision} auto', auto.images_per_s))
    report.write(f'\nFirst use of `auto` at {size}x{width}: '
                 f'{auto.first_s - auto.median_s:.1f} s over a steady step '
                 f'({dispatcher.measurements} buckets measured, '
                 f'{autotune_entries() - tunings} Triton tunings).')
    # Only the height changes: every stage's height stays in its power-of-two bucket and
    # every width (and with it the kernels' alignment) stays as it was.
    other = torch.randn(batch_size, 3, second_height, width, device=device)
    before, tunings = set(dispatcher.choices), autotune_entries()
    again = time_steps(train_step(model, other, autocast), device, batch_size,
                       f'auto {second_height}x{width}', runs=2)
    new = [str(bucket) for bucket in dispatcher.choices if bucket not in before]
    report.write(f'A new height in the same buckets ({second_height}x{width}): '
                 f'{len(new)} buckets measured, {autotune_entries() - tunings} Triton tunings '
                 f'(expected: 0 and 0), first step {again.first_s:.2f} s against '
                 f'{again.median_s:.2f} s steady.')
    for bucket in new:
        report.write(f'- measured again: {bucket}')
    report.write(f'\nWhat `auto` chose ({precision}):\n\n{dispatcher.table()}')


def benchmark_inference(report: MarkdownReport, device: torch.device,
                        backbones: Sequence[tuple[str, str | dict]], batch_size: int, size: int,
                        runs: int) -> list[tuple[str, float]]:
    """The ``inference`` section: each folded backbone, ``auto`` against ``nchw``, fp32.

    Returns:
        list[tuple[str, float]]: (setting, images/s) of every setting timed.
    """
    rows = []
    for backbone_type, arch in backbones:
        name = backbone_name(backbone_type, arch)
        model = reparameterize(build_backbone(backbone_type, arch, device)).eval()
        images = torch.randn(batch_size, 3, size, size, device=device)
        report.write(f'\n### {name} folded (deploy) inference, fp32, batch {batch_size} x '
                     f'{size}x{size}\n')
        report.write(STEP_HEADER)
        set_depthwise_impl(model, 'nchw')
        nchw = time_steps(inference_step(model, images), device, batch_size, 'nchw', runs)
        report.write(_row(nchw, None))
        set_depthwise_impl(model, 'auto')
        with fresh_dispatcher():
            auto = time_steps(inference_step(model, images), device, batch_size, 'auto', runs)
        report.write(_row(auto, nchw))
        rows += [(f'{name} deploy nchw', nchw.images_per_s),
                 (f'{name} deploy auto', auto.images_per_s)]
        del model, images
    return rows


def table1_impls(device: torch.device) -> list[str]:
    """Every path Table 1 times on ``device``: each backend, then 'auto' (our CPU path only on
    CPUs)."""
    impls = [name for name in implementations() if name != 'auto'
             and (name != 'cpu' or device.type == 'cpu')]
    return impls + ['auto']


def table1_runs(cells: Sequence[Cell], precisions: Sequence[str],
                tf32_off_cell: bool) -> list[tuple[str, Sequence[Cell], bool]]:
    """The tables of the ``table1`` section: (precision, cells, fp32 convs on TF32).

    Each precision over every cell with PyTorch's default TF32 setting for fp32 convs (on), and
    with ``tf32_off_cell`` (default on GPUs) the first cell again in fp32 kept fp32-accurate.
    """
    runs = [(precision, cells, True) for precision in precisions]
    if tf32_off_cell and 'fp32' in precisions:
        runs.append(('fp32', cells[:1], False))
    return runs


def benchmark_table1(report: MarkdownReport, device: torch.device, cells: Sequence[Cell],
                     precisions: Sequence[str], batch_size: int, channels: int, depth: int,
                     budget_s: float, warmup: int = 1, runs: int = 3,
                     tf32_off_cell: bool | None = None) -> list[DepthwiseTiming]:
    """The ``table1`` section: every path on each cell, per precision (see :func:`table1_runs`).

    Returns:
        list[DepthwiseTiming]: Every cell of every table, in order.
    """
    impls = table1_impls(device)
    peak = fp32_peak_tflops(device)
    tf32_off_cell = device.type == 'cuda' if tf32_off_cell is None else tf32_off_cell
    everything = []
    for precision, run_cells, tf32 in table1_runs(cells, precisions, tf32_off_cell):
        with fp32_convs_on_tf32(tf32):
            results = _table1_precision(report, device, run_cells, precision, impls, batch_size,
                                        channels, depth, budget_s, warmup, runs, peak)
        suffix = '' if tf32 else '_tf32_off'
        title = (f'{depth} depth-wise layers, ({batch_size}, {channels}, R, R), {precision}'
                 f'{"" if tf32 else " TF32 off"}, {device_name(device)}')
        report.add_figure(plot_table1(results, report.figure_path(f'table1_{precision}{suffix}'),
                                      title), f'Table 1, {precision}')
        everything += results
    return everything


def _table1_precision(report: MarkdownReport, device: torch.device, cells: Sequence[Cell],
                      precision: str, impls: Sequence[str], batch_size: int, channels: int,
                      depth: int, budget_s: float, warmup: int, runs: int,
                      peak: float | None) -> list[DepthwiseTiming]:
    tf32 = ('' if precision != 'fp32' or device.type != 'cuda' else
            ', TF32 on' if fp32_convs_use_tf32() else ', TF32 off (fp32-accurate)')
    report.write(f'\n### {depth} stacked depth-wise layers, ({batch_size}, {channels}, R, R), '
                 f'{precision}{tf32}\n')
    report.write('ms per pass; TF/s counts the valid taps only'
                 + (f', % of the {peak} TFLOP/s FP32 peak' if peak else '')
                 + '; speed-up over nchw; (...) what auto ran per pass\n')

    def write_cell(t: DepthwiseTiming) -> None:
        what = f'n/a ({t.unavailable})' if t.ms is None else f'{t.ms:.2f} ms ({t.resolved})'
        report.write(f'<!-- {t.mode} R={t.resolution} K={t.kernel_size} {t.impl}: {what} -->')

    # Our kernels are timed where auto would measure them; PyTorch's paths everywhere.
    kernels = [impl for impl in impls if is_triton_backend(impl)]
    results = benchmark_depthwise(batch_size=batch_size, channels=channels, depth=depth,
                                  impls=impls, device=device, dtype=DTYPES[precision],
                                  warmup=warmup, runs=runs, cells=cells, budget_s=budget_s,
                                  on_result=write_cell, skip_what_auto_skips=kernels)
    report.write('\n' + format_table(results, peak_tflops=peak))
    return results


def second_image_height(size: int, second_height: int | None = None) -> int:
    """The height of the backbone section's second image: ``second_height``, or by default
    ``size - 32`` (asked here once, by the benchmark and by the compile count of its run)."""
    return size - 32 if second_height is None else second_height


def run_gpu_benchmark(report: MarkdownReport,
                      device: str | torch.device = 'cuda',
                      sections: Sequence[str] = SECTIONS,
                      precisions: Sequence[str] = ('fp32', 'bf16'),
                      backbones: Sequence[tuple[str, str | dict]] = BACKBONES,
                      batch_size: int = 8,
                      size: int = 512,
                      second_height: int | None = None,
                      table1_cells: Sequence[Cell] = TABLE1_CELLS,
                      table1_batch: int = 64,
                      table1_channels: int = 384,
                      table1_depth: int = 24,
                      runs: int = 5,
                      budget_s: float = 2.0,
                      table1_warmup: int = 1,
                      table1_runs: int = 3,
                      tf32_off_cell: bool | None = None) -> list[str]:
    """Runs the benchmark sections into ``report``; a section that raises is reported (with its
    traceback in the log) and the next one runs.

    Args:
        report (MarkdownReport): Where the figures go, as they are measured.
        device (str | torch.device): Device. Defaults to 'cuda'.
        sections (Sequence[str]): Subset of :data:`SECTIONS`, run in this order.
            Defaults to all.
        precisions (Sequence[str]): 'fp32' and/or 'bf16'. Defaults to both.
        backbones (Sequence[tuple[str, str | dict]]): (registry type, arch) of each backbone
            timed. Defaults to :data:`BACKBONES`.
        batch_size (int): Backbone batch. Defaults to 8.
        size (int): Backbone image side. Defaults to 512.
        second_height (int, optional): Height of a second image of the same width, in the same
            buckets. Defaults to None (``size - 32``).
        table1_cells (Sequence[Cell]): Table-1 cells. Defaults to :data:`TABLE1_CELLS`.
        table1_batch (int): Table-1 batch. Defaults to 64.
        table1_channels (int): Table-1 channels. Defaults to 384.
        table1_depth (int): Table-1 stacked layers. Defaults to 24.
        runs (int): Steady steps timed per backbone setting. Defaults to 5.
        budget_s (float): Timed seconds per Table-1 cell after which no further pass starts.
            Defaults to 2.0.
        table1_warmup (int): Untimed passes per Table-1 cell. Defaults to 1.
        table1_runs (int): Timed passes per Table-1 cell at most. Defaults to 3.
        tf32_off_cell (bool, optional): Also time the first Table-1 cell in fp32 with TF32 off.
            Defaults to None (on GPUs only).

    Returns:
        list[str]: The sections that failed.
    """
    device = torch.device(device)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f'unknown sections {unknown}; choose from {SECTIONS}')
    unknown = [p for p in precisions if p not in DTYPES]
    if unknown:
        raise ValueError(f'unknown precisions {unknown}; choose from {sorted(DTYPES)}')
    second_height = second_image_height(size, second_height)
    report.write(f'## mmreplk GPU benchmark, {datetime.date.today().isoformat()}\n')
    report.write(f'{describe_device(device)}\n')
    failed: list[str] = []
    for section in sections:
        def run_section() -> None:
            if section == 'backbone':
                report.write('\n## Backbone train step')
                rows = benchmark_backbone_steps(report, device, backbones, batch_size, size,
                                                second_height, precisions, runs)
                report.add_figure(plot_steps(rows, report.figure_path('train_step'),
                                             f'train step, batch {batch_size} x {size}x{size}, '
                                             f'{device_name(device)}'), 'train step')
            elif section == 'inference':
                report.write('\n## Folded backbone inference')
                rows = benchmark_inference(report, device, backbones, batch_size, size, runs)
                report.add_figure(plot_steps(rows, report.figure_path('inference'),
                                             f'folded inference, batch {batch_size} x '
                                             f'{size}x{size}, {device_name(device)}'),
                                  'inference')
            else:
                report.write('\n## Paper Table-1 layout')
                benchmark_table1(report, device, table1_cells, precisions, table1_batch,
                                 table1_channels, table1_depth, budget_s, table1_warmup,
                                 table1_runs, tf32_off_cell)

        try:
            seconds = time_call(run_section, device)
        except Exception as error:  # the next section still runs; the caller sees the failure
            MMLogger.get_current_instance().exception(f'section {section} failed')
            report.write(f'\n**Section {section} failed**: {type(error).__name__}: {error}')
            failed.append(section)
            continue
        report.write(f'\n<!-- section {section}: {seconds:.0f} s -->')
    return failed

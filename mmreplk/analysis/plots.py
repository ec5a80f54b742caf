"""Pictures of the speed tables: Table 1 by kernel size and the backbone step by path.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no display, no global backend
switch), so a benchmark on a headless GPU box writes its PNGs beside its markdown.
"""
from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from .dwconv_benchmark import MODES, DepthwiseTiming


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=110, layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def plot_table1(results: Sequence[DepthwiseTiming], path: str | os.PathLike | None,
                title: str) -> Path | None:
    """Milliseconds by kernel size, one line per path, log scale; one panel per (mode, R).

    Unmeasured cells (``n/a``) are left out of the lines.

    Args:
        results (Sequence[DepthwiseTiming]): Output of
            :func:`~mmreplk.analysis.dwconv_benchmark.benchmark_depthwise`.
        path (str | os.PathLike): PNG to write (its folder is created).
        title (str): Figure title (say the device, dtype and input).

    Returns:
        Path | None: The PNG written, or None when no cell was measured.
    """
    measured = [r for r in results if r.ms is not None]
    if not measured:
        return None
    panels = [(mode, r) for mode in MODES
              for r in sorted({t.resolution for t in measured if t.mode == mode})]
    impls = list(dict.fromkeys(r.impl for r in results))
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = _figure(3.6 * columns + 1.6, 3.2 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes = axes[:len(panels)]
    for ax, (mode, resolution) in zip(axes, panels):
        for index, impl in enumerate(impls):
            points = sorted((t.kernel_size, t.ms) for t in measured
                            if (t.mode, t.resolution, t.impl) == (mode, resolution, impl))
            if points:
                # One colour per path in every panel, also where a path has no point.
                ax.plot(*zip(*points), marker='o', label=impl, color=f'C{index % 10}')
        ax.set_yscale('log')
        _plain_numbers(ax.yaxis)
        ax.set_xticks(sorted({t.kernel_size for t in measured if t.mode == mode
                              and t.resolution == resolution}))
        ax.set_xlabel('kernel size K')
        ax.set_title(f'{mode.replace("_", " + ")}, R = {resolution}', fontsize=10)
        ax.grid(True, which='both', alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel('ms per pass (log scale)')
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc='outside right upper', fontsize=9)
    figure.suptitle(textwrap.fill(title, 110), fontsize=10)
    return _save(figure, path)


def plot_steps(rows: Sequence[tuple[str, float]], path: str | os.PathLike | None,
               title: str) -> Path | None:
    """Images per second by path, one horizontal bar per setting.

    Args:
        rows (Sequence[tuple[str, float]]): (setting, images/s), e.g. ('fp32 nchw', 21.3),
            drawn top to bottom.
        path (str | os.PathLike): PNG to write (its folder is created).
        title (str): Figure title.

    Returns:
        Path | None: The PNG written, or None without rows.
    """
    if not rows:
        return None
    figure = _figure(6.4, 0.45 * len(rows) + 1.4)
    ax = figure.subplots()
    labels = [label for label, _ in rows][::-1]
    values = [value for _, value in rows][::-1]
    bars = ax.barh(labels, values, color=['tab:orange' if 'auto' in label else 'tab:blue'
                                          for label in labels])
    ax.bar_label(bars, fmt='%.1f', padding=3, fontsize=9)
    ax.set_xlabel('images / s')
    ax.set_xlim(0, 1.18 * max(values))
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    return _save(figure, path)


def _plain_numbers(axis) -> None:
    """Log-scale ticks at 1, 2 and 5 of each decade, as plain numbers (0.2, 5, 100)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f'{value:g}'))
    axis.set_minor_formatter(NullFormatter())


def _save(figure, path: str | os.PathLike | None) -> Path | None:
    # A report without a file (printed only) has no place for its figures.
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path

"""Training curves of a work dir, from the scalars mmengine's ``LoggerHook`` writes.

Every run in a work dir (the first one and each ``--resume``) writes its records to
``<work_dir>/<timestamp>/vis_data/scalars.json``, one JSON object per line: training records
carry ``iter`` (the global iteration, also their ``step``) and, in epoch-based runs, ``epoch``;
validation records carry the metrics, and their ``step`` is the iteration in iteration-based runs
and the epoch in epoch-based ones. The curves put everything on the iteration axis, join the runs
in time order, and let a resumed run's records replace those the killed run logged after its
last checkpoint.

mmsegmentation ships ``tools/analysis_tools/analyze_logs.py`` inside its package, but it needs
seaborn, which the OpenMMLab stack does not install, and reads one JSON file per run.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mmreplk.utils import ToolError

__all__ = ['BOOKKEEPING_KEYS', 'TrainingCurves', 'load_training_curves', 'plot_training_curves',
           'scalar_logs']

#: Keys of a record that describe it rather than measure the model; not plotted by default.
BOOKKEEPING_KEYS = ('step', 'iter', 'epoch', 'lr', 'base_lr', 'time', 'data_time', 'memory')


@dataclass
class TrainingCurves:
    """Scalar series of a work dir on a common iteration axis.

    Args:
        series (dict[str, dict[int, float]]): Per key, the value at each iteration.
        validation_keys (list[str]): Keys that come from validation records.
        logs (list[Path]): The ``scalars.json`` files read, oldest run first.
    """
    series: dict[str, dict[int, float]] = field(default_factory=dict)
    validation_keys: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def default_keys(self) -> list[str]:
        """The training loss and every validation metric, the curves a run is judged by."""
        keys = ['loss'] if 'loss' in self.series else []
        return keys + self.validation_keys

    def points(self, key: str) -> tuple[list[int], list[float]]:
        """Iterations and values of one key, in iteration order.

        Args:
            key (str): A scalar key of the log, e.g. ``loss`` or ``mIoU``.

        Returns:
            tuple[list[int], list[float]]: The iterations and the values.
        """
        if key not in self.series:
            logs = [str(log) for log in self.logs]
            raise ToolError(f'no scalar {key!r} in the training logs {logs}; logged keys: '
                            f'{sorted(self.series)}')
        steps = sorted(self.series[key])
        return steps, [self.series[key][step] for step in steps]


def scalar_logs(work_dir: str | Path) -> list[Path]:
    """The ``scalars.json`` of every run in a work dir, oldest first.

    Args:
        work_dir (str | Path): A training work dir.

    Returns:
        list[Path]: One file per run; the run folders are timestamps, so their names sort in time.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise ToolError(f'work dir not found: {work_dir}')
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda p: p.parent.parent.name)
    if not logs:
        raise ToolError(f'no training log in {work_dir}: expected <timestamp>/vis_data/'
                        "scalars.json, which mmengine's LoggerHook writes through a "
                        'LocalVisBackend (the visualizer of every config here); is it the '
                        "run's --work-dir?")
    return logs


def load_training_curves(work_dir: str | Path) -> TrainingCurves:
    """Reads every run of a work dir into series on the iteration axis.

    Args:
        work_dir (str | Path): A training work dir.

    Returns:
        TrainingCurves: The series; a later run's value at an iteration replaces an earlier one's.
    """
    curves = TrainingCurves(logs=scalar_logs(work_dir))
    series: dict[str, dict[int, float]] = defaultdict(dict)
    # Epoch-based runs log validation at the epoch: place it at the epoch's last logged iteration.
    epoch_end: dict[int, int] = {}
    for log in curves.logs:
        for line in log.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if 'iter' in record:
                step = int(record['iter'])
                if 'epoch' in record:
                    epoch = int(record['epoch'])
                    epoch_end[epoch] = max(epoch_end.get(epoch, step), step)
            else:
                step = int(record['step'])
                step = epoch_end.get(step, step) if epoch_end else step
                # Its time and data_time are of the validation loop, not of training.
                record = {key: value for key, value in record.items()
                          if key not in BOOKKEEPING_KEYS}
                curves.validation_keys += [key for key in record
                                           if key not in curves.validation_keys]
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    series[key][step] = float(value)
    curves.series = dict(series)
    return curves


def plot_training_curves(curves: TrainingCurves, out: str | Path,
                         keys: list[str] | None = None, title: str | None = None) -> Path:
    """Draws one panel per key against the iteration and writes the figure.

    Args:
        curves (TrainingCurves): Series from :func:`load_training_curves`.
        out (str | Path): Image file to write (the suffix picks the format, e.g. ``.png``).
        keys (list[str], optional): Keys to draw. Defaults to
            :meth:`TrainingCurves.default_keys`.
        title (str, optional): Figure title. Defaults to None.

    Returns:
        Path: ``out``.
    """
    from .plots import _figure, _save  # matplotlib only when drawing

    keys = keys or curves.default_keys()
    if not keys:
        raise ToolError(f'nothing to plot: no loss and no validation metric in {curves.logs}; '
                        f'choose from {sorted(curves.series)} with --keys')
    panels = [(key, *curves.points(key)) for key in keys]
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    # The object API on an Agg canvas, as for the speed tables: no pyplot, no global backend switch.
    figure = _figure(4.5 * columns, 3.2 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    # One iteration range for every panel, so that a metric validated once sits where it belongs.
    first = min(steps[0] for _, steps, _ in panels)
    last = max(steps[-1] for _, steps, _ in panels)
    margin = max(1, (last - first) // 50)
    for ax, (key, steps, values) in zip(axes.flat, panels):
        # Validation comes a few times per run: mark its points; training is a dense line.
        marker = 'o' if key in curves.validation_keys else None
        ax.plot(steps, values, marker=marker, linewidth=1)
        ax.set_title(key)
        ax.set_xlabel('iteration')
        ax.set_xlim(first - margin, last + margin)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return _save(figure, out)

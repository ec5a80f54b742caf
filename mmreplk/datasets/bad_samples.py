"""Training on a dataset with a few unreadable files: skip them, name them, stop if there are many.

mmengine's ``BaseDataset`` re-draws a sample only when the pipeline returns None; an image that
cannot be read raises inside a data-loader worker and ends the run with a traceback, whenever
the sampler first reaches it (hours in, on ADE20K). :class:`SkipBadSamples` wraps the training
set instead: a sample whose preparation raises is replaced by the next index that prepares
(deterministically, without drawing from any generator, so an exact resume stays exact), with
one warning naming its files and the error; once more than ``max_bad_fraction`` of the samples
are bad, :class:`BadSamplesError` stops the run with the list.

"More than the share" is counted as ``bad > max_bad_fraction * max(seen, len(dataset))``: early
in a run one bad file among few samples seen is not yet a share, while a dataset with many bad
files stops within its first pass. With data-loader workers every worker counts the samples it
prepares itself, so the share is judged per worker (a worker sees ``1 / num_workers`` of them:
the stop comes later, never earlier).

:func:`guard_train_dataset` puts the wrapper into a config's training set (``tools/train.py``
does so); ``max_bad_sample_fraction`` in the config sets the share (None: no wrapper).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from ..utils.errors import ToolError

#: Default ``max_bad_fraction``: the share of bad samples a run tolerates.
DEFAULT_MAX_BAD_FRACTION = 0.01

# Replacements tried for one bad sample before the run stops regardless of the share: a
# pipeline that fails on every sample is a bug, not a few bad files.
_MAX_REPLACEMENTS = 20
_PATH_KEYS = ('img_path', 'seg_map_path', 'ann_path', 'file_name')


class BadSamplesError(ToolError):
    """Too many samples of a dataset could not be read; the message lists them.

    Raised in a data-loader worker, it reaches the main process re-built from a message with the
    worker's traceback; only the message itself is kept.
    """

    def __init__(self, message: str) -> None:
        marker = f'{type(self).__name__}: '
        if 'Original Traceback' in message and marker in message:
            message = message[message.rindex(marker) + len(marker):].strip()
        super().__init__(message)


@DATASETS.register_module()
class SkipBadSamples(Dataset):
    """Dataset wrapper that skips samples which cannot be read (see the module docstring).

    Attribute access other than indexing goes to the wrapped dataset (``metainfo``,
    ``get_data_info``, ...), so samplers, hooks and visualisers see the original.

    Args:
        dataset (Dataset | dict): The dataset, or its config.
        max_bad_fraction (float): Share of bad samples above which the run stops.
            Defaults to 0.01.
    """

    def __init__(self, dataset: Dataset | dict, max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
                 ) -> None:
        if not 0 <= max_bad_fraction < 1:
            raise ValueError(f'max_bad_fraction must be in [0, 1), got {max_bad_fraction}')
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.max_bad_fraction = max_bad_fraction
        self.seen = 0
        self.bad: dict[str, str] = {}
        self._bad_count = 0

    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's meta information."""
        return self.dataset.metainfo

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        # Only called for attributes not found on the wrapper itself.
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int):
        self.seen += 1
        for attempt in range(_MAX_REPLACEMENTS + 1):
            candidate = (index + attempt) % len(self.dataset)
            try:
                return self.dataset[candidate]
            except BadSamplesError:
                raise
            except Exception as err:  # noqa: BLE001 -- every failure is named and counted
                self._record(candidate, err)
        raise BadSamplesError(
            f'{_MAX_REPLACEMENTS + 1} samples in a row from index {index} could not be '
            f'prepared: more likely a broken pipeline or data root than bad files. '
            f'{self._listing()}')

    def _record(self, index: int, err: Exception) -> None:
        files = ', '.join(self._files(index)) or f'sample {index}'
        lines = str(err).strip().splitlines()
        reason = f'{type(err).__name__}: {lines[0]}' if lines else type(err).__name__
        self._bad_count += 1
        if files not in self.bad:
            self.bad[files] = reason
            print_log(f'skipped a sample that cannot be read: {files} ({reason}); another sample '
                      f'takes its place', logger='current', level=logging.WARNING)
        allowed = self.max_bad_fraction * max(self.seen, len(self.dataset))
        if self._bad_count > allowed:
            raise BadSamplesError(
                f'{self._bad_count} of {self.seen} samples could not be read, more than '
                f'max_bad_sample_fraction={self.max_bad_fraction:g} of the dataset allows. '
                f'Fix or remove them (tools/check_dataset.py CONFIG lists every one), or raise '
                f'max_bad_sample_fraction in the config. {self._listing()}')

    def _files(self, index: int) -> list[str]:
        try:
            info = self.dataset.get_data_info(index)
        except Exception:  # noqa: BLE001 -- the file names only make the warning clearer
            return []
        return [str(info[key]) for key in _PATH_KEYS if info.get(key)]

    def _listing(self) -> str:
        return 'Bad so far:\n' + '\n'.join(f'  {files}: {reason}'
                                           for files, reason in self.bad.items())


def guard_train_dataset(cfg: Config, splits: Sequence[str] = ('train_dataloader',)) -> Config:
    """Wraps the training set of ``cfg`` in :class:`SkipBadSamples` (once).

    Args:
        cfg (Config): Full config (edited in place). ``max_bad_sample_fraction`` (default
            :data:`DEFAULT_MAX_BAD_FRACTION`; None turns the wrapper off) sets the share.
        splits (Sequence[str]): Data loaders whose dataset is wrapped.

    Returns:
        Config: ``cfg``.
    """
    fraction = cfg.get('max_bad_sample_fraction', DEFAULT_MAX_BAD_FRACTION)
    if fraction is None:
        return cfg
    for split in splits:
        loader = cfg.get(split)
        if not loader or not isinstance(loader.get('dataset'), dict):
            continue
        if loader.dataset.get('type') in ('SkipBadSamples', SkipBadSamples):
            continue
        loader.dataset = dict(type='SkipBadSamples', dataset=loader.dataset,
                              max_bad_fraction=fraction)
    return cfg

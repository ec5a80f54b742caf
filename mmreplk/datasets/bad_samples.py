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

Validation and test cannot replace a sample (the metric would count one twice), so there
:func:`guard_eval_dataset` (``tools/train.py`` for validation, ``tools/test.py``) makes the
wrapper *drop* it: the sample comes out as None, :func:`skip_bad_samples_collate` leaves it out of
its batch, and :class:`SkipBadSamplesValLoop` / :class:`SkipBadSamplesTestLoop` skip a batch left
empty, evaluate what was read and name what was skipped in the log line of the metrics
(``skipped_samples``) and in a warning that lists the files. The same share stops the run.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import DATASETS, FUNCTIONS, LOOPS
from mmengine.runner import TestLoop, ValLoop
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
        replace (bool): Replace a bad sample by the next one (training); False returns a
            :class:`BadSample` in its place instead (validation and test). Defaults to True.
    """

    def __init__(self, dataset: Dataset | dict, max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
                 replace: bool = True) -> None:
        if not 0 <= max_bad_fraction < 1:
            raise ValueError(f'max_bad_fraction must be in [0, 1), got {max_bad_fraction}')
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.max_bad_fraction = max_bad_fraction
        self.replace = replace
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
        for attempt in range(_MAX_REPLACEMENTS + 1 if self.replace else 1):
            candidate = (index + attempt) % len(self.dataset)
            try:
                return self.dataset[candidate]
            except BadSamplesError:
                raise
            except Exception as err:  # noqa: BLE001 -- every failure is named and counted
                files = self._record(candidate, err)
            if not self.replace:
                return BadSample(files)
        raise BadSamplesError(
            f'{_MAX_REPLACEMENTS + 1} samples in a row from index {index} could not be '
            f'prepared: more likely a broken pipeline or data root than bad files. '
            f'{self._listing()}')

    def _record(self, index: int, err: Exception) -> str:
        """Counts and names a bad sample (one warning per file); returns its files."""
        files = ', '.join(self._files(index)) or f'sample {index}'
        lines = str(err).strip().splitlines()
        reason = f'{type(err).__name__}: {lines[0]}' if lines else type(err).__name__
        self._bad_count += 1
        if files not in self.bad:
            self.bad[files] = reason
            instead = ('another sample takes its place' if self.replace else
                       'it is left out of the evaluation')
            print_log(f'skipped a sample that cannot be read: {files} ({reason}); {instead}',
                      logger='current', level=logging.WARNING)
        allowed = self.max_bad_fraction * max(self.seen, len(self.dataset))
        if self._bad_count > allowed:
            raise BadSamplesError(
                f'{self._bad_count} of {self.seen} samples could not be read, more than '
                f'max_bad_sample_fraction={self.max_bad_fraction:g} of the dataset allows. '
                f'Fix or remove them (tools/check_dataset.py CONFIG lists every one), or raise '
                f'max_bad_sample_fraction in the config. {self._listing()}')
        return files

    def _files(self, index: int) -> list[str]:
        try:
            info = self.dataset.get_data_info(index)
        except Exception:  # noqa: BLE001 -- the file names only make the warning clearer
            return []
        return [str(info[key]) for key in _PATH_KEYS if info.get(key)]

    def _listing(self) -> str:
        return 'Bad so far:\n' + '\n'.join(f'  {files}: {reason}'
                                           for files, reason in self.bad.items())


class BadSample:
    """What :class:`SkipBadSamples` returns for an unreadable sample when it may not replace it.

    Args:
        files (str): The sample's files, for the log.
    """

    def __init__(self, files: str) -> None:
        self.files = files


#: Key under which :func:`skip_bad_samples_collate` passes the skipped samples' files on.
SKIPPED_KEY = 'skipped_bad_samples'


@FUNCTIONS.register_module()
def skip_bad_samples_collate(data_batch: Sequence, collate: str | dict = 'pseudo_collate'):
    """Collates the readable samples of a batch; None when none is.

    Args:
        data_batch (Sequence): Samples, some of them :class:`BadSample`.
        collate (str | dict): The collate function (a ``FUNCTIONS`` name, or a config with
            ``type`` and arguments). Defaults to 'pseudo_collate'.

    Returns:
        dict | None: The collated batch, with the skipped files under :data:`SKIPPED_KEY`
        when there are any; None for a batch of bad samples only.
    """
    good = [sample for sample in data_batch if not isinstance(sample, BadSample)]
    skipped = [sample.files for sample in data_batch if isinstance(sample, BadSample)]
    if isinstance(collate, dict):
        kwargs = dict(collate)
        function = FUNCTIONS.get(kwargs.pop('type'))
    else:
        function, kwargs = FUNCTIONS.get(collate), {}
    batch = function(good, **kwargs) if good else {}
    if skipped:
        batch[SKIPPED_KEY] = skipped
    return batch or None


class _SkipsBadSamples:
    """What the validation and test loops below add: batches without the skipped samples, and
    the skipped files in the metrics."""

    def run(self) -> dict:
        self._skipped: list[str] = []
        evaluate = self.evaluator.evaluate

        def evaluate_what_was_read(size: int) -> dict:
            metrics = evaluate(size - len(self._skipped))
            if self._skipped:
                metrics['skipped_samples'] = len(self._skipped)
                print_log(f'evaluated {size - len(self._skipped)} of {size} samples; skipped '
                          f'{len(self._skipped)} that cannot be read: '
                          f'{"; ".join(self._skipped)}', logger='current',
                          level=logging.WARNING)
            return metrics

        self.evaluator.evaluate = evaluate_what_was_read
        try:
            return super().run()
        finally:
            del self.evaluator.evaluate

    def run_iter(self, idx, data_batch) -> None:
        if isinstance(data_batch, dict):
            self._skipped += data_batch.pop(SKIPPED_KEY, [])
        if data_batch:
            super().run_iter(idx, data_batch)


@LOOPS.register_module()
class SkipBadSamplesValLoop(_SkipsBadSamples, ValLoop):
    """``ValLoop`` over a dataset guarded by :func:`guard_eval_dataset`."""


@LOOPS.register_module()
class SkipBadSamplesTestLoop(_SkipsBadSamples, TestLoop):
    """``TestLoop`` over a dataset guarded by :func:`guard_eval_dataset`."""


_EVAL_LOOPS = {'val': ('val_dataloader', 'val_cfg', 'ValLoop', 'SkipBadSamplesValLoop'),
               'test': ('test_dataloader', 'test_cfg', 'TestLoop', 'SkipBadSamplesTestLoop')}


def guard_eval_dataset(cfg: Config, split: str) -> Config:
    """Makes validation (``split='val'``) or test skip unreadable samples (module docstring).

    Only a config with mmengine's own loop (``ValLoop``/``TestLoop``) is changed; another loop
    type is left as it is.

    Args:
        cfg (Config): Full config (edited in place); ``max_bad_sample_fraction`` as in
            :func:`guard_train_dataset`.
        split (str): 'val' or 'test'.

    Returns:
        Config: ``cfg``.
    """
    loader_key, loop_key, plain_loop, loop = _EVAL_LOOPS[split]
    fraction = cfg.get('max_bad_sample_fraction', DEFAULT_MAX_BAD_FRACTION)
    loader, loop_cfg = cfg.get(loader_key), cfg.get(loop_key)
    if (fraction is None or not loader or not isinstance(loader.get('dataset'), dict)
            or loop_cfg is None or loop_cfg.get('type', plain_loop) not in (plain_loop, loop)
            or loader.dataset.get('type') == 'SkipBadSamples'):
        return cfg
    loader = dict(loader)
    loader['dataset'] = dict(type='SkipBadSamples', dataset=loader['dataset'],
                             max_bad_fraction=fraction, replace=False)
    collate = loader.get('collate_fn', dict(type='pseudo_collate'))
    loader['collate_fn'] = dict(type='skip_bad_samples_collate', collate=collate)
    cfg[loader_key] = loader
    cfg[loop_key] = dict(loop_cfg, type=loop)
    return cfg


def guard_train_dataset(cfg: Config) -> Config:
    """Wraps the training set of ``cfg`` in :class:`SkipBadSamples` (once).

    Args:
        cfg (Config): Full config (edited in place). ``max_bad_sample_fraction`` (default
            :data:`DEFAULT_MAX_BAD_FRACTION`; None turns the wrapper off) sets the share.

    Returns:
        Config: ``cfg``.
    """
    fraction = cfg.get('max_bad_sample_fraction', DEFAULT_MAX_BAD_FRACTION)
    loader = cfg.get('train_dataloader')
    if (fraction is None or not loader or not isinstance(loader.get('dataset'), dict)
            or loader.dataset.get('type') in ('SkipBadSamples', SkipBadSamples)):
        return cfg
    loader.dataset = dict(type='SkipBadSamples', dataset=loader.dataset,
                          max_bad_fraction=fraction)
    return cfg

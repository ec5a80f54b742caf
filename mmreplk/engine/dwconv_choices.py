"""What ``impl='auto'`` chose, kept with the run: one log line, a table in the work dir, and a
resumed run that takes the same paths.

The depth-wise conv dispatcher (:mod:`mmreplk.ops.dispatch`) logs each bucket's choice at DEBUG
only, so nothing interrupts a progress bar. This hook writes the choices, with the measured
times, to ``WORK_DIR/dwconv_choices.json`` whenever new ones were made (after a train iteration,
a validation or a test), logs one INFO line when the run ends, and, when the run resumes
(``--resume``), pins the table's choices before the first forward, so a resumed run runs the
paths its first part measured instead of timing them again (timing may pick another, equally
exact path, whose rounding differs).

A training run that does not resume starts a new table. A resumed run adds its choices to the
table, and so does a test run (a test run writes to the training's work dir by default),
which leaves the training's entries as they are, so a later ``--resume`` still takes the
training's paths.
"""
from __future__ import annotations

import json
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmreplk.ops.choice_file import read_choices, read_records
from mmreplk.ops.dispatch import Bucket, get_dispatcher, summarize
from mmreplk.utils.fileio import atomic_write

#: Name of the choices table in the work dir.
CHOICES_FILE = 'dwconv_choices.json'


@HOOKS.register_module()
class DwconvChoicesHook(Hook):
    """Writes what ``impl='auto'`` chose to the work dir; a resumed run takes the same paths.

    :func:`mmreplk.apis.build_runner` adds it to every run.

    Args:
        filename (str): Name of the table in the work dir. Defaults to
            ``'dwconv_choices.json'``.
    """

    priority = 'VERY_LOW'

    def __init__(self, filename: str = CHOICES_FILE) -> None:
        self.filename = filename
        self._before: set[Bucket] = set()
        self._saved = -1
        self._failed = False
        self._training = self._resuming = False

    def path(self, runner) -> str:
        """The table's path in ``runner``'s work dir."""
        return osp.join(runner.work_dir, self.filename)

    def before_run(self, runner) -> None:
        dispatcher = get_dispatcher()
        self._before = set(dispatcher.choices)
        # mmengine keeps --resume as Runner._resume (a Runner built without a config has no
        # cfg.resume); either says the run continues an earlier one in this work dir.
        self._resuming = bool(getattr(runner, '_resume', False) or runner.cfg.get('resume', False))
        if not self._resuming:
            return
        path = self.path(runner)
        try:
            pinned = read_choices(path)
        except (OSError, ValueError) as error:
            runner.logger.warning(f'depth-wise conv choices of the resumed run are ignored '
                                  f'({error}); impl=auto measures again.')
            return
        dispatcher.pin(pinned)

    def before_train(self, runner) -> None:
        self._training = True

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._save(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._save(runner)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._save(runner)

    def after_run(self, runner) -> None:
        self._save(runner)
        dispatcher = get_dispatcher()
        new = {b: c for b, c in dispatcher.choices.items() if b not in self._before}
        if new:
            runner.logger.info(f"depth-wise conv impl='auto': {summarize(new)}. Table: "
                               f'{self.path(runner)}')

    def _save(self, runner) -> None:
        dispatcher = get_dispatcher()
        if len(dispatcher.choices) == self._saved or self._failed or not is_main_process():
            return
        path = self.path(runner)
        try:
            earlier = {} if self._training and not self._resuming else read_records(path)
        except (OSError, ValueError):
            earlier = {}  # not a table: replaced
        ours = {bucket: record for bucket, record in dispatcher.records().items()
                if not (record['source'] == 'from the work dir' and bucket in earlier)}
        table = {**earlier, **ours} if self._training else {**ours, **earlier}
        try:
            atomic_write(json.dumps(table, indent=1), path)
        except OSError as error:
            # The table serves resuming; training goes on without it.
            self._failed = True
            runner.logger.warning(f'cannot write the depth-wise conv choices to '
                                  f'{self.path(runner)}: {error}')
            return
        self._saved = len(dispatcher.choices)

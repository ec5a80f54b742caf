"""A checkpoint hook that survives SIGKILL at any moment and makes resumed runs exact."""
from __future__ import annotations

import os.path as osp

from mmengine.dist import (all_gather_object, all_reduce_params, get_rank, get_world_size,
                           is_main_process)
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ..utils.fileio import AtomicWriteError, atomic_write, remove_stale_tmp_files
from .fileio import ATOMIC_BACKEND
from .resume import POINTER_NAME, CheckpointSaveError, save_failure_message
from .rng import get_data_rng_state, get_model_rng_state, set_data_rng_state, set_model_rng_state

#: Checkpoint key holding the per-rank generator states.
RNG_STATE_KEY = 'rng_state'


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a broken checkpoint and resumes bit-exactly.

    Use it in place of mmengine's hook:
    ``default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))`` (the other keys of
    the inherited ``checkpoint`` entry stay). It takes every argument of
    :class:`mmengine.hooks.CheckpointHook` and changes these things:

    * **Atomic files.** For a local ``out_dir`` (and no ``backend_args``), checkpoints are
      written through :class:`~mmreplk.engine.AtomicLocalBackend` and the ``last_checkpoint``
      pointer with :func:`~mmreplk.engine.atomic_write`: a file under its final name is always
      complete. Temporary files of a killed run are deleted when training starts again.
    * **Safe order.** A new checkpoint is written, then ``last_checkpoint`` points to it, and only
      then is the checkpoint that ``max_keep_ckpts`` expires deleted. mmengine deletes first, so
      a kill in between leaves ``last_checkpoint`` pointing at a deleted file.
    * **A failed save ends the run with what to do.** An ``OSError`` while saving (full disk,
      quota, I/O error) becomes a :class:`~mmreplk.engine.CheckpointSaveError` whose message
      gives the error, the space needed and free, the newest intact checkpoint and the command
      that resumes from it (:func:`~mmreplk.engine.resume.save_failure_message`).
    * **Generator states** (``save_rng_state``). Each checkpoint stores every rank's generator
      states; ``--resume`` restores them, so that with ``randomness=dict(seed=..,
      deterministic=True)`` a resumed run ends with the same weights as an uninterrupted one.
      Validation gets its states back when it ends, so it draws nothing from training's.
      The model stream (torch, for dropout and drop path) is snapshotted after every training
      iteration and restored before the next one, so nothing run in between draws from it
      either. The data stream (NumPy and ``random``, which the transforms use when
      ``num_workers=0``) is restored where the loop starts: at the start of the run for
      iteration-based loops, which replay the data of the iterations already done, and at the
      start of each epoch for epoch-based ones. With ``num_workers > 0`` the transforms run in
      worker processes, whose seeds mmengine derives from ``seed``, and the replay alone is exact.

    * **Buffers of all ranks.** In a multi-process run every rank averages its buffers (BN
      statistics, which plain BN keeps per rank) right before a save, so the checkpoint holds the
      state of every rank and a resumed run continues exactly.

    Exact resume holds for iteration-based training and for epoch-based training resumed from
    end-of-epoch checkpoints with non-persistent workers; it needs the same number of processes.

    Args:
        save_rng_state (bool): Store and restore generator states as described above.
            Defaults to True.
        **kwargs: Arguments of :class:`mmengine.hooks.CheckpointHook`.
    """

    def __init__(self, save_rng_state: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_rng_state = save_rng_state
        self._model_rng: dict | None = None
        self._data_rng: dict | None = None
        self._gathered_rng: list[dict] | None = None
        self._loaded_rng: tuple[int, list[dict]] | None = None
        self._states_before_val: tuple[dict, dict] | None = None

    def before_train(self, runner) -> None:
        """Selects the atomic backend for local folders and removes stale temporary files.

        Args:
            runner (Runner): The runner.
        """
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if (self.backend_args is None and self.file_client_args is None
                and isinstance(get_file_backend(out_dir), LocalBackend)):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)
        if is_main_process():
            folders = {runner.work_dir}
            if isinstance(self.file_backend, LocalBackend):
                folders.add(self.out_dir)
            for folder in sorted(folders):
                for path in remove_stale_tmp_files(folder):
                    runner.logger.warning(f'removed {path}, a partial file of an interrupted run')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keeps the generator states of a loaded checkpoint until the loop starts.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The loaded checkpoint.
        """
        states = checkpoint.get(RNG_STATE_KEY)
        if self.save_rng_state and states is not None:
            self._loaded_rng = (checkpoint['meta'].get('iter'), states)

    def before_train_epoch(self, runner) -> None:
        """Restores the data generator states from where this epoch (or the replay) starts.

        Args:
            runner (Runner): The runner.
        """
        if not self.save_rng_state:
            return
        resumed = self._take_resumed_state(runner)
        if resumed is not None:
            self._model_rng, self._data_rng = resumed['model'], resumed['data']
        if self._data_rng is not None:
            set_data_rng_state(self._data_rng)
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            self._data_rng = get_data_rng_state()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Puts the model generators back where the previous iteration left them.

        Args:
            runner (Runner): The runner.
            batch_idx (int): Index of the batch.
            data_batch (dict | tuple | list, optional): The batch.
        """
        if self.save_rng_state and self._model_rng is not None:
            set_model_rng_state(self._model_rng)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Snapshots the generators, then saves a checkpoint when one is due.

        Args:
            runner (Runner): The runner.
            batch_idx (int): Index of the batch.
            data_batch (dict | tuple | list, optional): The batch.
            outputs (dict, optional): The model's outputs.
        """
        if self.save_rng_state:
            self._model_rng = get_model_rng_state()
            if not isinstance(runner.train_loop, IterBasedTrainLoop):
                self._data_rng = get_data_rng_state()
        super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def before_val(self, runner) -> None:
        """Remembers the generator states, so that validation draws nothing from training's.

        Args:
            runner (Runner): The runner.
        """
        if self.save_rng_state:
            self._states_before_val = (get_model_rng_state(), get_data_rng_state())

    def after_val(self, runner) -> None:
        """Puts back the generator states :meth:`before_val` remembered.

        Args:
            runner (Runner): The runner.
        """
        if self.save_rng_state and self._states_before_val is not None:
            model, data = self._states_before_val
            set_model_rng_state(model)
            set_data_rng_state(data)
            self._states_before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Adds the states gathered from all ranks to the checkpoint being saved.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The checkpoint about to be written.
        """
        if self._gathered_rng is not None:
            checkpoint[RNG_STATE_KEY] = self._gathered_rng

    def _take_resumed_state(self, runner) -> dict | None:
        """This rank's states from the checkpoint the run resumed from, if it resumed."""
        if self._loaded_rng is None:
            return None
        saved_iter, states = self._loaded_rng
        self._loaded_rng = None
        # A checkpoint given as load_from (fine-tuning) also passes through
        # after_load_checkpoint; only a resume moves the loop to the saved iteration.
        if runner.iter == 0 or runner.iter != saved_iter:
            return None
        if len(states) != get_world_size():
            runner.logger.warning(
                f'the checkpoint holds generator states of {len(states)} processes but this run '
                f'has {get_world_size()}; random draws after the resume will differ from the '
                f'interrupted run')
            return None
        return states[get_rank()]

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        if get_world_size() > 1:
            # Collective call. Only rank 0 writes, so the others' BN statistics would be lost on
            # resume: every rank takes the mean first (what SyncBuffersHook does at the end of
            # training), and a resumed run continues from the state every rank had.
            all_reduce_params(runner.model.buffers(), op='mean')
        if self.save_rng_state:
            # Collective call: every rank reaches this point, only rank 0 writes the file.
            self._gathered_rng = all_gather_object(dict(
                model=self._model_rng if self._model_rng is not None else get_model_rng_state(),
                data=self._data_rng if self._data_rng is not None else get_data_rng_state()))

        expired = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        try:
            self._write_checkpoint(runner, ckpt_filename, meta, expired)
        except OSError as err:
            # An expected fault of long runs (full disk, quota): the files are consistent, so
            # the user gets what to do instead of a traceback.
            size = err.size if isinstance(err, AtomicWriteError) else None
            raise CheckpointSaveError(
                save_failure_message(self.last_ckpt, err, runner.work_dir, size)) from err
        finally:
            self._gathered_rng = None

    def _write_checkpoint(self, runner, ckpt_filename: str, meta: dict,
                          expired: list[int]) -> None:
        """Writes the checkpoint, then the pointer to it, then deletes the expired ones."""
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(self.last_ckpt, osp.join(runner.work_dir, POINTER_NAME))
        for old_step in expired:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # DeepSpeed checkpoints are folders.
                self.file_backend.rmtree(path)

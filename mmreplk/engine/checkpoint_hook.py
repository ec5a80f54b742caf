"""A checkpoint hook that survives SIGKILL at any moment, makes resumed runs exact, and stops a run
cleanly on a signal or when it diverges."""
from __future__ import annotations

import os.path as osp

from mmengine.dist import (all_gather_object, all_reduce_params, barrier, broadcast_object_list,
                           get_rank, get_world_size, is_main_process)
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.optim import AmpOptimWrapper, LinearLR
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ..utils.fileio import AtomicWriteError, atomic_write, remove_stale_tmp_files
from .divergence import TrainingDiverged, divergence_message, nonfinite_terms, weights_are_finite
from .fileio import ATOMIC_BACKEND
from .interrupt import StopSignals, StopVote, TrainingInterrupted
from .resume import POINTER_NAME, CheckpointResumeError, find_resume_checkpoint, save_failure
from .rng import get_data_rng_state, get_model_rng_state, set_data_rng_state, set_model_rng_state

#: Checkpoint key holding the per-rank generator states.
RNG_STATE_KEY = 'rng_state'
#: Checkpoint key holding every rank's buffers, in a checkpoint written on a stop signal.
RANK_BUFFERS_KEY = 'rank_buffers'


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
      gives the error, the space needed and free, the newest intact checkpoint and how to resume
      from it (:func:`~mmreplk.engine.resume.save_failure`).
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
      state of every rank and a resumed run continues exactly. A save on a stop signal, which
      an uninterrupted run would not make, averages nothing: it stores every rank's buffers
      (``rank_buffers``) and each rank gets its own back on resume.
    * **Signals stop the run after an iteration** (:mod:`~mmreplk.engine.interrupt`). While
      training, SIGTERM, SIGINT and SIGUSR1 are recorded; after the iteration in progress every
      rank agrees to stop, a checkpoint of that iteration is written the usual crash-safe way
      (iteration-based loops; an epoch-based run keeps its last end-of-epoch checkpoint), and
      :class:`~mmreplk.engine.TrainingInterrupted` ends training. A second signal during the save
      changes nothing.
    * **Divergence stops the run** (:mod:`~mmreplk.engine.divergence`). A NaN or infinite loss
      term (or gradient norm, where the optimizer wrapper clips) ends training at that
      iteration with :class:`~mmreplk.engine.TrainingDiverged`: which term, the newest finite
      checkpoint, what to try. A checkpoint whose weights are not finite is never written, so
      ``max_keep_ckpts`` never deletes the last finite one.
    * **A resume that cannot continue stops with one message**: a checkpoint of another
      architecture or class count, or one at or past ``max_iters``.

    Exact resume holds for iteration-based training and for epoch-based training resumed from
    end-of-epoch checkpoints with non-persistent workers; it needs the same number of processes.

    Args:
        save_rng_state (bool): Store and restore generator states as described above.
            Defaults to True.
        max_nonfinite_steps (int): How many iterations with a non-finite loss (or gradient
            norm) in the whole run are let pass, as long as the weights stay finite (with AMP,
            whose loss scaler skips those steps); the next one stops the run. Defaults to 0:
            the first one stops it.
        **kwargs: Arguments of :class:`mmengine.hooks.CheckpointHook`.
    """

    def __init__(self, save_rng_state: bool = True, max_nonfinite_steps: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if max_nonfinite_steps < 0:
            raise ValueError(f'max_nonfinite_steps must be >= 0, got {max_nonfinite_steps}')
        self.save_rng_state = save_rng_state
        self.max_nonfinite_steps = max_nonfinite_steps
        self._nonfinite_steps = 0
        self._signals = StopSignals()
        self._vote = StopVote()
        self._model_rng: dict | None = None
        self._data_rng: dict | None = None
        self._gathered_rng: list[dict] | None = None
        self._loaded_rng: tuple[int, list[dict]] | None = None
        self._gathered_buffers: list[dict] | None = None
        self._loaded_buffers: tuple[int, list[dict]] | None = None
        self._stopping = False
        self._states_before_val: tuple[dict, dict] | None = None

    def before_train(self, runner) -> None:
        """Selects the atomic backend for local folders, removes stale temporary files and
        starts recording stop signals.

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
        self._vote.setup()
        self.catch_signals()
        # The training loader has started its workers (and torch its SIGCHLD handler) by now.
        self._signals.forgive_worker_deaths()

    def catch_signals(self) -> None:
        """Starts recording stop signals (idempotent; :meth:`before_train` calls it).

        :func:`mmreplk.apis.train` calls it before ``runner.train()``, so that a signal during
        the minutes of building, loading weights or resuming is not lost: it stops the run after
        its first iteration. (It also makes the data-loader workers ignore SIGINT and SIGUSR1, see
        :func:`~mmreplk.engine.interrupt.ignore_stop_signals_in_worker`.)
        """
        self._signals.install()

    def after_train(self, runner) -> None:
        """Gives the stop signals their previous handlers back.

        Args:
            runner (Runner): The runner.
        """
        self.release_signals()

    def release_signals(self) -> None:
        """Gives the stop signals their previous handlers back (idempotent; also called by
        :func:`mmreplk.apis.train` when training ends with an exception)."""
        self._signals.uninstall()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keeps the generator states of a loaded checkpoint until the loop starts.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The loaded checkpoint.
        """
        if getattr(runner, '_resume', False):
            _check_resumable(runner, checkpoint)
        states = checkpoint.get(RNG_STATE_KEY)
        if self.save_rng_state and states is not None:
            self._loaded_rng = (checkpoint['meta'].get('iter'), states)
        buffers = checkpoint.get(RANK_BUFFERS_KEY)
        if buffers is not None:
            self._loaded_buffers = (checkpoint['meta'].get('iter'), buffers)

    def before_train_epoch(self, runner) -> None:
        """Restores the data generator states from where this epoch (or the replay) starts.

        Args:
            runner (Runner): The runner.
        """
        self._restore_rank_buffers(runner)
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
        terms = nonfinite_terms(runner.message_hub, list(outputs or {}))
        signum, diverged = self._vote.agree(self._signals.received, bool(terms))
        if diverged:
            self._on_nonfinite(runner, terms)
        saved_before = self.last_ckpt
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if signum is not None:
            self._stop_on_signal(runner, signum, saved_now=self.last_ckpt != saved_before)

    def _on_nonfinite(self, runner, terms: dict[str, float]) -> None:
        """Lets a non-finite step pass while the allowance lasts and the weights are finite;
        otherwise ends training (every rank reaches this at the same iteration)."""
        self._nonfinite_steps += 1
        if (self._nonfinite_steps <= self.max_nonfinite_steps
                and weights_are_finite(runner.model)):
            runner.logger.warning(
                f'iteration {runner.iter + 1}: non-finite '
                f'{", ".join(terms) or "losses on another process"}; step skipped '
                f'({self._nonfinite_steps} of max_nonfinite_steps={self.max_nonfinite_steps})')
            return
        self._raise_diverged(runner, terms or 'non-finite losses on another process')

    def _raise_diverged(self, runner, terms: dict[str, float] | str) -> None:
        self.release_signals()
        newest = _newest_intact_checkpoint(runner.work_dir)
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        warmup = any(isinstance(s, LinearLR) for s in schedulers)
        message = divergence_message(
            runner.iter + 1, terms, newest,
            {name: values[0] for name, values in runner.optim_wrapper.get_lr().items()},
            isinstance(runner.optim_wrapper, AmpOptimWrapper), warmup,
            self.max_nonfinite_steps)
        raise TrainingDiverged(message, resume_from=newest)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Stops a validation inside training on a signal (it may outlast the grace period).

        Args:
            runner (Runner): The runner.
            batch_idx (int): Index of the batch.
            data_batch (dict | tuple | list, optional): The batch.
            outputs (list, optional): The model's outputs.
        """
        if not self._signals.installed:
            return
        signum, _ = self._vote.agree(self._signals.received, False)
        if signum is not None:
            # Validation runs after the iteration's own hooks: runner.iter counts it already.
            done = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(runner.iter))
            self._stop_on_signal(runner, signum, saved_now=self.last_ckpt == done,
                                 done=runner.iter)

    def _stop_on_signal(self, runner, signum: int, saved_now: bool,
                        done: int | None = None) -> None:
        """Saves the iterations done (unless saved already), then ends training.

        Args:
            runner (Runner): The runner.
            signum (int): The signal agreed on.
            saved_now (bool): Whether a checkpoint of the iterations done was just written.
            done (int, optional): Iterations done; defaults to the one in progress included.
        """
        iteration = runner.iter + 1 if done is None else done
        if isinstance(runner.train_loop, IterBasedTrainLoop) and not saved_now:
            runner.logger.info(f'Saving checkpoint at {iteration} iterations')
            self._stopping = True
            self._save_checkpoint_with_step(runner, iteration,
                                            meta=dict(epoch=runner.epoch, iter=iteration))
            saved_now = True
        if get_world_size() > 1:
            # Only rank 0 writes: a rank that exits before the file is in place makes the
            # launcher (torchrun, srun --kill-on-bad-exit) kill rank 0 in the middle of the save.
            barrier()
        self.release_signals()
        if saved_now:
            raise TrainingInterrupted(signum, iteration, self.last_ckpt, saved=True)
        raise TrainingInterrupted(signum, iteration, _newest_intact_checkpoint(runner.work_dir),
                                  saved=False)

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
        if self._gathered_buffers is not None:
            checkpoint[RANK_BUFFERS_KEY] = self._gathered_buffers

    def _restore_rank_buffers(self, runner) -> None:
        """Gives each rank its own buffers back after a resume from a stop checkpoint."""
        if self._loaded_buffers is None:
            return
        saved_iter, buffers = self._loaded_buffers
        self._loaded_buffers = None
        if runner.iter == 0 or runner.iter != saved_iter or len(buffers) != get_world_size():
            return
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        own = dict(model.named_buffers())
        for name, value in buffers[get_rank()].items():
            if name in own:
                own[name].copy_(value)

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
        if not weights_are_finite(runner.model):
            # Every rank holds the same weights (DDP), so every rank decides the same.
            self._raise_diverged(runner, 'the weights after this step are not finite (the '
                                 'losses were)')
        if get_world_size() > 1 and not self._stopping:
            # Collective call. Only rank 0 writes, so the others' BN statistics would be lost on
            # resume: every rank takes the mean first (what SyncBuffersHook does at the end of
            # training), and a resumed run continues from the state every rank had.
            all_reduce_params(runner.model.buffers(), op='mean')
        elif get_world_size() > 1:
            # A stop comes between the saves of an uninterrupted run, which would not average
            # here: the checkpoint keeps every rank's own buffers instead (collective call).
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            self._gathered_buffers = all_gather_object(
                {name: value.detach().cpu() for name, value in model.named_buffers()})
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
            raise save_failure(self.last_ckpt, err, runner.work_dir, size) from err
        finally:
            self._gathered_rng = None
            self._gathered_buffers = None

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


def _newest_intact_checkpoint(work_dir: str) -> str | None:
    """The checkpoint a stopped run resumes from, as ``--resume`` would choose it.

    Collective: every rank stops at the same iteration and calls it. Choosing reads the newest
    checkpoint whole (its CRC check, about 1.5 s per GB), so rank 0 alone does it and tells the
    others, instead of every rank reading the same file from a shared file system within the
    grace period before SIGKILL.
    """
    chosen = [find_resume_checkpoint(work_dir).chosen if is_main_process() else None]
    broadcast_object_list(chosen)
    return chosen[0]


def _check_resumable(runner, checkpoint: dict) -> None:
    """Stops a resume that cannot continue, before any weight is loaded.

    Raises:
        CheckpointResumeError: The checkpoint is at or past ``max_iters``, or its weights have
            other shapes than the model's (another arch or class count).
    """
    meta = checkpoint.get('meta', {})
    saved_iter = meta.get('iter')
    loop = runner.train_loop
    if isinstance(loop, IterBasedTrainLoop) and saved_iter is not None \
            and saved_iter >= loop.max_iters:
        raise CheckpointResumeError(
            f'the checkpoint is at iteration {saved_iter}, and this run ends at max_iters='
            f'{loop.max_iters}: nothing is left to train. Raise train_cfg.max_iters to go on, '
            f'or start a new run in another work dir.')
    state = checkpoint.get('state_dict', {})
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    own = model.state_dict()
    mismatched = [f'{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}'
                  for key, value in ((k.removeprefix('module.'), v) for k, v in state.items())
                  if key in own and hasattr(value, 'shape') and own[key].shape != value.shape]
    missing = [key for key in own if key not in state and f'module.{key}' not in state]
    if mismatched or len(missing) == len(own):
        detail = ('; '.join(mismatched[:3]) + (f' (and {len(mismatched) - 3} more)'
                                              if len(mismatched) > 3 else '')
                  if mismatched else 'none of its weights has a name of this model')
        raise CheckpointResumeError(
            f'cannot resume: the checkpoint was trained with another model (architecture or '
            f'number of classes) than this config builds: {detail}. Resume with the config it '
            f'was trained with, or fine-tune from it with load_from (without --resume).')

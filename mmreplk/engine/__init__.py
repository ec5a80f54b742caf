"""Training-engine extensions: crash-safe checkpoint files, exactly resumable runs, clean stops
on signals and divergence, and UniRepLKNet's layer-wise learning-rate decay."""
from .checkpoint_hook import RNG_STATE_KEY, CrashSafeCheckpointHook
from .coverage_hook import CheckpointCoverageError, CheckpointCoverageHook, check_state_dict_covers
from .divergence import TrainingDiverged
from .fileio import ATOMIC_BACKEND, AtomicLocalBackend
from .interrupt import STOP_SIGNALS, TrainingInterrupted
from .layer_decay import UniRepLKNetLearningRateDecayOptimizerConstructor, unireplknet_layer_id
from .resume import (CheckpointError, CheckpointResumeError, CheckpointSaveError,
                     ResumableError, ResumeCandidates, checkpoint_damage,
                     find_resume_checkpoint, resolve_resume)
from .rng import get_data_rng_state, get_model_rng_state, set_data_rng_state, set_model_rng_state

__all__ = [
    'ATOMIC_BACKEND', 'AtomicLocalBackend', 'CheckpointCoverageError', 'CheckpointCoverageHook',
    'CheckpointError', 'check_state_dict_covers',
    'CheckpointResumeError', 'CheckpointSaveError', 'CrashSafeCheckpointHook', 'RNG_STATE_KEY',
    'ResumableError', 'ResumeCandidates', 'STOP_SIGNALS', 'TrainingDiverged',
    'TrainingInterrupted', 'checkpoint_damage',
    'find_resume_checkpoint', 'get_data_rng_state', 'get_model_rng_state',
    'resolve_resume', 'set_data_rng_state',
    'set_model_rng_state', 'UniRepLKNetLearningRateDecayOptimizerConstructor',
    'unireplknet_layer_id'
]

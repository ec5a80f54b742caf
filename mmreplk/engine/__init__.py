"""Training-engine extensions: crash-safe checkpoint files, exactly resumable runs and
UniRepLKNet's layer-wise learning-rate decay."""
from .checkpoint_hook import RNG_STATE_KEY, CrashSafeCheckpointHook
from .fileio import ATOMIC_BACKEND, AtomicLocalBackend
from .layer_decay import UniRepLKNetLearningRateDecayOptimizerConstructor, unireplknet_layer_id
from .resume import (CheckpointError, CheckpointResumeError, CheckpointSaveError,
                     ResumeCandidates, checkpoint_damage, find_resume_checkpoint,
                     resolve_resume, resume_command)
from .rng import get_data_rng_state, get_model_rng_state, set_data_rng_state, set_model_rng_state

__all__ = [
    'ATOMIC_BACKEND', 'AtomicLocalBackend', 'CheckpointError',
    'CheckpointResumeError', 'CheckpointSaveError', 'CrashSafeCheckpointHook', 'RNG_STATE_KEY',
    'ResumeCandidates', 'checkpoint_damage',
    'find_resume_checkpoint', 'get_data_rng_state', 'get_model_rng_state',
    'resolve_resume', 'resume_command', 'set_data_rng_state',
    'set_model_rng_state', 'UniRepLKNetLearningRateDecayOptimizerConstructor',
    'unireplknet_layer_id'
]

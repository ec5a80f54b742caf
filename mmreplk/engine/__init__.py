"""Training-engine extensions: crash-safe checkpoint files and exactly resumable runs."""
from .checkpoint_hook import RNG_STATE_KEY, CrashSafeCheckpointHook
from .fileio import (ATOMIC_BACKEND, TMP_SUFFIX, AtomicLocalBackend, AtomicWriteError,
                     atomic_write, remove_stale_tmp_files)
from .resume import (CheckpointError, CheckpointResumeError, CheckpointSaveError,
                     ResumeCandidates, checkpoint_damage, find_resume_checkpoint,
                     resolve_resume, resume_command)
from .rng import get_data_rng_state, get_model_rng_state, set_data_rng_state, set_model_rng_state

__all__ = [
    'ATOMIC_BACKEND', 'AtomicLocalBackend', 'AtomicWriteError', 'CheckpointError',
    'CheckpointResumeError', 'CheckpointSaveError', 'CrashSafeCheckpointHook', 'RNG_STATE_KEY',
    'ResumeCandidates', 'TMP_SUFFIX', 'atomic_write', 'checkpoint_damage',
    'find_resume_checkpoint', 'get_data_rng_state', 'get_model_rng_state',
    'remove_stale_tmp_files', 'resolve_resume', 'resume_command', 'set_data_rng_state',
    'set_model_rng_state'
]

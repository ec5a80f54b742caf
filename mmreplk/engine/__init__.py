"""Training-engine extensions: crash-safe checkpoint files and exactly resumable runs."""
from .checkpoint_hook import RNG_STATE_KEY, CrashSafeCheckpointHook
from .fileio import (ATOMIC_BACKEND, TMP_SUFFIX, AtomicLocalBackend, atomic_write,
                     remove_stale_tmp_files)
from .rng import get_data_rng_state, get_model_rng_state, set_data_rng_state, set_model_rng_state

__all__ = [
    'ATOMIC_BACKEND', 'AtomicLocalBackend', 'CrashSafeCheckpointHook', 'RNG_STATE_KEY',
    'TMP_SUFFIX', 'atomic_write', 'get_data_rng_state', 'get_model_rng_state',
    'remove_stale_tmp_files', 'set_data_rng_state', 'set_model_rng_state'
]

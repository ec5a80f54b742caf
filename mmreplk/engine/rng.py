"""Random-number-generator states as plain tensors, so that they fit a ``weights_only`` checkpoint.

Training draws from two independent streams, which a resume must restore at different moments:

* the *model* stream -- torch's CPU and CUDA generators (dropout, drop path);
* the *data* stream -- Python's ``random`` and NumPy's global generator, which the mmcv/mmseg/mmdet
  transforms use when the pipeline runs in the main process (``num_workers=0``).

NumPy's and Python's native state objects would need unpickling beyond the allow-list of
:mod:`mmreplk.utils.checkpoint`, so they are stored as int64 tensors and plain numbers.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def get_model_rng_state() -> dict:
    """Returns the torch CPU (and, when available, CUDA) generator states.

    Returns:
        dict: ``{'torch': ByteTensor, 'cuda': list[ByteTensor]}`` (``cuda`` empty without CUDA).
    """
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return dict(torch=torch.get_rng_state(), cuda=list(cuda))


def set_model_rng_state(state: dict) -> None:
    """Restores a state from :func:`get_model_rng_state`.

    Args:
        state (dict): The saved state. CUDA states are restored only when the number of visible
            devices matches.
    """
    torch.set_rng_state(state['torch'].cpu())
    cuda = state.get('cuda', [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def get_data_rng_state() -> dict:
    """Returns Python's and NumPy's global generator states as tensors and numbers.

    Returns:
        dict: ``{'python': {...}, 'numpy': {...}}``.
    """
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    if kind != 'MT19937':
        raise RuntimeError(f'unexpected NumPy global generator {kind!r}')
    return dict(
        python=dict(version=version, internal=torch.tensor(internal, dtype=torch.int64),
                    gauss_next=gauss_next),
        numpy=dict(keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached_gaussian)))


def set_data_rng_state(state: dict) -> None:
    """Restores a state from :func:`get_data_rng_state`.

    Args:
        state (dict): The saved state.
    """
    python = state['python']
    random.setstate((python['version'], tuple(python['internal'].tolist()),
                     python['gauss_next']))
    numpy = state['numpy']
    np.random.set_state(('MT19937', numpy['keys'].cpu().numpy().astype(np.uint32), numpy['pos'],
                         numpy['has_gauss'], numpy['cached_gaussian']))

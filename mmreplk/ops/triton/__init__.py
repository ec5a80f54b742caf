"""mmreplk's Triton kernels for the "same"-padded, stride-1 depth-wise conv, one module per family.

Nothing here imports Triton until a kernel module is imported (by a backend of
:mod:`mmreplk.ops.backends`, on first use), so ``import mmreplk`` never needs it.

* :mod:`.launch`: the one launch helper every kernel goes through (device guard, size buckets,
  width alignment, autotune key, autotuning with Triton's on-disk cache, interpreter tiles).
* :mod:`.banded_ieee`: the first kernel, backend ``triton``: banded products in 16-column
  slices, fp32 always on CUDA-core FMAs (fp32-accurate), fp16/bf16 on tensor cores; its own
  weight gradient.
* :mod:`.banded`: backend ``triton_banded``, the banded implicit GEMM on tensor cores (TF32
  for fp32 while PyTorch's switch allows it), any map size.
* :mod:`.toeplitz`: backend ``triton_toeplitz``, a dense Toeplitz GEMM per channel on tensor
  cores, maps of at most 1024 pixels.
* :mod:`.weight_grad`: the tensor-core weight gradient both tensor-core backends run.
"""
from __future__ import annotations

import sys

#: Largest H * W the dense-Toeplitz family takes (R = 32).
TOEPLITZ_MAX_PIXELS = 1024

#: CUDA's limit on the second and third grid dimensions, where the kernels put the channels.
MAX_GRID_CHANNELS = 65535

#: The kernel modules, each holding its kernels in ``KERNELS``.
KERNEL_MODULES = ('banded_ieee', 'banded', 'toeplitz', 'weight_grad')


def loaded_kernels() -> list:
    """The :class:`~.launch.Kernel` objects of the kernel modules imported so far (none is
    imported here, so asking never loads Triton).

    Returns:
        list[Kernel]: Each with its jitted ``fn``, its autotuner ``tuned`` and its candidates.
    """
    return [kernel for name in KERNEL_MODULES
            if (module := sys.modules.get(f'{__name__}.{name}')) is not None
            for kernel in module.KERNELS]


def autotune_entries() -> int:
    """Tunings held by the autotuners of mmreplk's Triton kernels loaded so far in this process.

    Returns:
        int: The number of (kernel, tuning key) pairs measured; 0 when no kernel was loaded.
    """
    return sum(len(kernel.tuned.cache) for kernel in loaded_kernels())


__all__ = [
    'KERNEL_MODULES', 'MAX_GRID_CHANNELS', 'TOEPLITZ_MAX_PIXELS', 'autotune_entries',
    'loaded_kernels'
]

"""The one way mmreplk's Triton kernels are launched: device guard, sizes, key and tuning.

Every kernel takes its tensors first (NCHW contiguous), then the sizes ``N, C, H, W``, their
powers of two ``N_BUCKET, H_BUCKET, W_BUCKET`` (read by no kernel: the autotuner's key), any
extra integers, then its constexprs, among which ``K``, ``PRECISION`` (the ``tl.dot`` input
precision), ``ALIGN`` and ``UPCAST``, set here. Kernels declare the sizes in
``do_not_specialize``, so Triton compiles no variant per size: one compiled variant and one
tuning per (bucket, alignment), the same key the dispatcher's bucket holds
(:mod:`mmreplk.ops.precision` answers the alignment for both).

``ALIGN`` (8 or 1) divides W: kernels write ``W = W // ALIGN * ALIGN``, a no-op that tells the
compiler so, and start their input slices at multiples of it, so rows load as 16-byte vectors.
``UPCAST`` widens bf16 dot operands to fp32 under Triton's interpreter only: Triton 3.9's
interpreter multiplies bf16 ``tl.dot`` operands as their raw uint16 bit patterns; widening is
exact (bf16 products are exact in fp32), so the interpreter still checks the kernels' indexing
while the GPU keeps native bf16 tensor-core dots.
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from ..precision import fp32_convs_use_tf32, width_alignment

#: Enough programs in flight to fill an H100 (132 SMs) several times over.
TARGET_PROGRAMS = 4 * 132

#: The size arguments of every kernel, never specialised (see the module docstring).
SIZE_ARGS = ['N', 'C', 'H', 'W', 'N_BUCKET', 'H_BUCKET', 'W_BUCKET']

#: What the autotuners key on: sizes rounded up to powers of two (images of many sizes reuse one
#: tuning per bucket), K, the dot precision and the width alignment (dtypes are added by Triton).
TUNING_KEY = ['N_BUCKET', 'H_BUCKET', 'W_BUCKET', 'K', 'PRECISION', 'ALIGN']

#: Relative error bound of one TF32 tensor-core product (both operands truncated to 10 bits).
TF32_PRODUCT_BOUND = 2.0**-9

#: One autotune candidate: tile constexprs, num_warps, num_stages.
Candidate = tuple[dict, int, int]

#: A launch grid from the chosen tiles.
Grid = Callable[[dict], tuple[int, ...]]


@triton.jit
def _probe():
    pass


@triton.jit
def dot_acc(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``acc + a @ b`` in fp32, the operands widened to fp32 first where ``UPCAST`` says so
    (see the module docstring). Inlined into the calling kernel."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION)


def interpreting() -> bool:
    """Whether the kernels were built for Triton's CPU interpreter (``TRITON_INTERPRET=1`` set
    before Triton was imported; tests only)."""
    return isinstance(_probe, InterpretedFunction)


def check_device(tensor: torch.Tensor) -> None:
    """Refuses a tensor the kernels cannot read: a CPU one outside the interpreter."""
    if not tensor.is_cuda and not interpreting():
        raise RuntimeError(
            f'the Triton depth-wise conv needs a CUDA tensor, got one on {tensor.device}; use '
            "impl='auto' (or set TRITON_INTERPRET=1 before importing triton, for tests only)")


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision of the tensor-core kernels for operands of ``dtype``.

    Args:
        dtype (torch.dtype): Dtype of the conv's operands.

    Returns:
        str: 'tf32' for fp32 while PyTorch lets fp32 convs use TF32
        (:func:`~mmreplk.ops.precision.fp32_convs_use_tf32`, read now), else 'ieee' (fp32 on
        CUDA-core FMAs; fp16/bf16 ignore it and use tensor cores).
    """
    return 'tf32' if dtype == torch.float32 and fp32_convs_use_tf32() else 'ieee'


def _autotune_cache() -> dict:
    # Triton >= 3.2 keeps tunings on disk beside its compiled kernels, so a second process
    # re-tunes nothing; older releases tune once per process.
    if 'cache_results' in inspect.signature(triton.autotune).parameters:
        return dict(cache_results=True)
    return {}


class Kernel:
    """A Triton kernel, its autotune candidates and the tiles it runs under the interpreter.

    Args:
        fn (triton.JITFunction): The kernel (possibly wrapped in ``triton.heuristics``).
        candidates (Sequence[Candidate]): Autotune candidates; every one is compiled for sm_90
            by tests/test_ops/test_triton_sm90.py (no register spills).
        interpreter_tiles (dict): Tiles run under the interpreter, which cannot autotune.
        keep (Callable, optional): ``(tiles, dtype, constexprs) -> bool``: whether a candidate
            is tuned for a launch on ``dtype`` operands with these constexprs. Defaults to None
            (every candidate, always).
    """

    def __init__(self, fn, candidates: Sequence[Candidate], interpreter_tiles: dict,
                 keep: Callable[[dict, torch.dtype, dict], bool] | None = None) -> None:
        self.fn = fn
        self.candidates = tuple(candidates)
        self.interpreter_tiles = dict(interpreter_tiles)
        self.keep = keep
        configs = [triton.Config(dict(tiles), num_warps=warps, num_stages=stages)
                   for tiles, warps, stages in self.candidates]
        options = _autotune_cache()
        if keep is not None:
            options['prune_configs_by'] = dict(early_config_prune=self._prune)
        self.tuned = triton.autotune(configs=configs, key=TUNING_KEY, **options)(fn)

    def tuned_candidates(self, dtype: torch.dtype, constexprs: dict) -> list[Candidate]:
        """The candidates tuned for a launch on ``dtype`` operands with these constexprs."""
        return [candidate for candidate in self.candidates
                if self.keep is None or self.keep(candidate[0], dtype, constexprs)]

    def _prune(self, configs: list, named_args: dict, **constexprs) -> list:
        # Triton's early_config_prune; the first argument is the input tensor.
        dtype = named_args[self.fn.arg_names[0]].dtype
        return [config for config in configs if self.keep(config.kwargs, dtype, constexprs)]

    def launch_conv(self, grid: Grid, x: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor | None, config: dict | None = None,
                    **constants) -> torch.Tensor:
        """Runs a "same"-padded depth-wise conv kernel ``(x, w, b, y)`` and returns ``y``.

        Args:
            grid (Grid): The grid, from the tiles chosen.
            x (torch.Tensor): Input (N, C, H, W).
            weight (torch.Tensor): Kernel (C, 1, K, K).
            bias (torch.Tensor, optional): Bias (C,), or None.
            config (dict, optional): Pinned tiles, see :meth:`launch`. Defaults to None.
            **constants: The kernel's constexprs besides ``K`` and ``HAS_BIAS``.

        Returns:
            torch.Tensor: Output (N, C, H, W), contiguous, dtype of ``x``.
        """
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        # The bias pointer is never read without HAS_BIAS; any tensor serves as a placeholder.
        self.launch(grid, (x, weight, weight if bias is None else bias, y), x.shape,
                    config=config, K=weight.shape[-1], HAS_BIAS=bias is not None, **constants)
        return y

    def launch(self, grid: Grid, tensors: Sequence[torch.Tensor], shape: Sequence[int],
               *extra: int, config: dict | None = None, **constants) -> None:
        """Runs the kernel on the device of ``tensors[0]``: autotuned, or with pinned tiles.

        Args:
            grid (Grid): The grid, from the tiles chosen.
            tensors (Sequence[torch.Tensor]): Pointer arguments (made contiguous; outputs are
                allocated contiguous).
            shape (Sequence[int]): (N, C, H, W) of the conv.
            *extra (int): Integer arguments after the sizes.
            config (dict, optional): Pinned tiles; None autotunes on CUDA and runs
                ``interpreter_tiles`` under the interpreter. Defaults to None.
            **constants: The kernel's other constexprs (``K``, ``PRECISION``, ...).
        """
        first = tensors[0]
        check_device(first)
        tensors = [tensor.contiguous() for tensor in tensors]
        n, c, h, w = shape
        constants.update(ALIGN=width_alignment(w),
                         UPCAST=interpreting() and first.dtype == torch.bfloat16)
        sizes = (n, c, h, w, *(triton.next_power_of_2(size) for size in (n, h, w)), *extra)
        # Triton launches on the current device: make it the tensors'.
        with torch.cuda.device(first.device) if first.is_cuda else contextlib.nullcontext():
            if config is None and not interpreting():
                self.tuned[grid](*tensors, *sizes, **constants)
            else:
                meta = {**constants, **(config or self.interpreter_tiles)}
                self.fn[grid(meta)](*tensors, *sizes, **meta)

"""Tensor-core Triton kernels for the large-kernel depth-wise conv: two families for ``auto``.

A "same"-padded depth-wise conv has no channel contraction, so on tensor cores it has to be a
GEMM whose contraction runs over pixels, with the kernel spread into a Toeplitz matrix. Both
families generate that matrix tile by tile from the K x K kernel in registers (gathers served by
L1: one channel's kernel is K^2 elements, 3.8 KB at K = 31 in fp32), so **no Toeplitz tensor is
ever stored**. The only extra memory is the weight gradient's partial sums,
``NUM_SPLITS * cdiv(W, BLOCK_W) * C * K^2`` fp32 values (NUM_SPLITS > 1 only while
``cdiv(W, BLOCK_W) * C * K`` is under :data:`TARGET_PROGRAMS`; 3 MB for C = 384, K = 31,
W = 64). Nothing is saved for backward beyond what the caller keeps (x and the weight).

Tensor cores have about 8x the FP32 CUDA-core rate (H100: ~1000 TF32 multiply-adds per clock
per SM) while an SM draws only some 25-40 bytes per clock from L2, so these kernels are bound by
operand traffic, not by multiply-adds: the tiles below trade wasted multiply-adds for reuse.
Where W is a multiple of 8 the input slices start 8-aligned, so rows load as 16-byte vectors.

* ``triton_banded`` (any size). Rows of all images fold into M, so small batches still fill a
  tile. For kernel row ``i`` an output tile is ``X_i[:, band] @ T_i[band, :]`` with
  ``T_i[l, w] = weight[i, l - w + P]``, the band being ``BLOCK_W + K - 1`` input columns cut in
  BLOCK_K-wide slices (16, the narrowest ``tl.dot`` operand, or 32). Multiply-adds per useful
  one in an interior tile: ``ceil(BLOCK_W + K - 1, BLOCK_K) / K``, at K = 31: 48/31
  (BLOCK_W = 16), 64/31 (32), 96/31 (64). Padding taps are skipped: slices start at the band's
  first input column inside the image, and kernel rows that miss every row of the tile are not
  run. Loads per output: ``K * ceil(BLOCK_W + K - 1, BLOCK_K) / BLOCK_W`` input values (93 at
  BLOCK_W = 16, 46 at 64). Candidates: 128 x 16 and 64 x 32 *h-major* tiles
  (``m = h * N + n``: a tile shares one or a few output rows, so the kernel-row skipping is
  exact; least waste; small maps), and 64 x 64 / 128 x 64 *n-major* tiles with 32-wide slices
  (``m = n * H + h``: a strip of one image, whose consecutive kernel rows re-read mostly the
  same input rows, from L1; large maps). Counted in the sm_90 code, a 128 x 64 x 32 step
  issues about 190 instructions per warp against 256 (TF32) or 128 (bf16) clocks of tensor
  core work, so instruction issue caps it at about 68% / 47% of the tensor-core peak (16-wide
  tiles: 17-28%). Three pipeline stages take 18-37 KB of shared memory in fp32.
* ``triton_toeplitz`` (maps of at most :data:`TOEPLITZ_MAX_PIXELS` pixels). Per channel
  ``Y = X @ T`` with the images as M (16-64 per tile) and ``T`` the (HW x HW)
  Toeplitz-of-Toeplitz matrix, contracted over the input rows within reach of the output block
  only. When ``K >= 2R - 1`` every entry of ``T`` is a valid tap: nothing is wasted but the
  padding of M to 16 images, and each loaded input value serves 64-128 outputs (tiles up to
  64 x 128 x 64, 48-147 KB of shared memory in fp32); generating ``T`` costs integer work
  that caps a step at about 50% (TF32) / 30% (bf16) of the tensor-core peak by the same
  count. At R = 32, K = 31, 57% of ``T`` is non-zero; the pixel limit stops there, where the
  banded family takes over.
* Input gradient: "same" padding with an odd kernel is self-adjoint up to flipping the kernel in
  both directions, so both families run their forward on ``grad_out`` with the flipped kernel.
* Weight gradient (one kernel, shared by both families): per (channel, group of GROUP kernel
  rows, column tile, split of the rows) ``S[(g, l), w] = X_{i0+g}[:, span]^T @ dY[:, tile]``
  on tensor cores, the GROUP kernel rows stacked in M so each output-gradient tile is loaded
  once for all of them, then the band diagonals of ``S`` summed into ``dW[i0 + g, :]``.
  Programs write disjoint partial slots summed in a fixed order: no atomics, bitwise
  reproducible. The tile is 32 columns wide where the band of 32 still fits the power of two a
  16-wide one needs (K = 19..33), else 16; SPAN (a power of two, >= 16) covers the band or the
  whole row, whichever is narrower: at K = 31, 64/31 multiply-adds per useful one in wide maps,
  16/16 at W = 16. Candidates: GROUP = 1 h-major (rows where the kernel row leaves the image
  are skipped exactly) and GROUP = 2 or 4 n-major (input rows re-read from L1). Both operands
  have the rows as contraction, which TF32 tensor cores only take after a transpose through
  shared memory: a step issues ~1300-2000 instructions per warp, 10-16% of the TF32 peak by
  the count above, the first place to tune once measured.

Precision (decided once, in :func:`dot_precision`, at call time): fp32 inputs follow
``torch.backends.cudnn.allow_tf32`` like PyTorch's own fp32 convs. On, they run on TF32 tensor
cores (``input_precision='tf32'``): each operand keeps 10 mantissa bits, so every product is off
by at most :data:`TF32_PRODUCT_BOUND` (2^-9, truncation on both operands) of its magnitude and
``|y - y_exact| <= 2^-9 * sum_k |x_k w_k|`` plus fp32 accumulation error; tested in that form.
Off, they stay fp32-accurate on CUDA-core FMAs (``'ieee'``, within 1e-5 relative; 3xTF32 would
be faster but is left out: Triton releases have mis-rounded it). fp16 and bf16 always run on
tensor cores. Every kernel accumulates in fp32.

Expected on one H100 (estimates from the counts above; **no GPU has measured these kernels**),
for the paper's Table 1 stack (24 layers, (64, 384, R, R), K = 31): forward R = 16 0.5-1 ms in
TF32 (toeplitz, 77 GFLOP of valid taps), 2-4 ms fp32-accurate; R = 64 40-70 ms in TF32
(banded: 6-13 TFLOP of tensor-core work, by tile, for 3.6 TFLOP of valid taps); forward +
backward R = 32 25-45 ms in TF32, the weight gradient the largest part. bf16 halves the traffic
but not the issued instructions: 1.1-1.5x faster than TF32. The GPU benchmark decides; ``auto``
keeps the fastest path per pass.

Autotuning: 3-4 candidates per kernel, keyed on K, the dot precision, the dtypes, the width's
alignment and the powers of two of N, H and W, so new sizes inside a bucket neither tune nor
compile again. Under Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors, tests)
:data:`INTERPRETER_CONFIGS` run instead.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import triton

from . import _triton_tc_kernels as kernels
from ._triton_depthwise import _check_device, _upcast, interpreting
from .precision import fp32_convs_use_tf32, width_alignment

#: Largest H * W the dense-Toeplitz family takes (R = 32).
TOEPLITZ_MAX_PIXELS = 1024

#: Relative error bound of one TF32 tensor-core product (both operands truncated to 10 bits).
TF32_PRODUCT_BOUND = 2.0**-9

#: Enough programs in flight to fill an H100 (132 SMs) several times over.
TARGET_PROGRAMS = 4 * 132

#: Tiles used under the interpreter (and by tests that pin a configuration).
INTERPRETER_CONFIGS = dict(banded_fwd=dict(BLOCK_M=16, BLOCK_W=16, BLOCK_K=16, H_MAJOR=True),
                           toeplitz_fwd=dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=16),
                           banded_wgrad=dict(BLOCK_M=16, GROUP=1, H_MAJOR=True))

# Autotune candidates: (tile sizes, num_warps, num_stages). All are compiled for sm_90 by
# tests/test_ops/test_triton_tc_compile.py.
AUTOTUNE_CONFIGS = dict(
    banded_fwd=[(dict(BLOCK_M=128, BLOCK_W=16, BLOCK_K=16, H_MAJOR=True), 4, 3),
                (dict(BLOCK_M=64, BLOCK_W=32, BLOCK_K=16, H_MAJOR=True), 4, 3),
                (dict(BLOCK_M=64, BLOCK_W=64, BLOCK_K=32, H_MAJOR=False), 4, 3),
                (dict(BLOCK_M=128, BLOCK_W=64, BLOCK_K=32, H_MAJOR=False), 8, 3)],
    toeplitz_fwd=[(dict(BLOCK_N=128, BLOCK_K=32), 4, 3), (dict(BLOCK_N=64, BLOCK_K=32), 4, 3),
                  (dict(BLOCK_N=128, BLOCK_K=64), 8, 3)],
    banded_wgrad=[(dict(BLOCK_M=64, GROUP=1, H_MAJOR=True), 4, 3),
                  (dict(BLOCK_M=32, GROUP=4, H_MAJOR=False), 4, 3),
                  (dict(BLOCK_M=64, GROUP=2, H_MAJOR=False), 4, 2)])

_TUNING_KEY = ['N_BUCKET', 'H_BUCKET', 'W_BUCKET', 'K', 'PRECISION', 'ALIGN']
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def wgrad_tile(kernel_size: int, width: int) -> tuple[int, int]:
    """``(BLOCK_W, SPAN)`` of the weight gradient: output columns per tile, input columns read.

    SPAN, a power of two of at least 16, covers the tile's band ``BLOCK_W + K - 1`` or the whole
    row, whichever is narrower. The tile is 32 columns wide where that band still fits the
    power of two a 16-wide tile needs (K = 19..33: 64), halving the loads per product at no
    extra waste; otherwise 16.
    """
    span16 = triton.next_power_of_2(16 + kernel_size - 1)
    block_w = 32 if width > 16 and 32 + kernel_size - 1 <= span16 else 16
    span = min(triton.next_power_of_2(block_w + kernel_size - 1), triton.next_power_of_2(width))
    return block_w, max(16, span)


def _tuned(kernel, name: str):
    configs = [triton.Config(tiles, num_warps=warps, num_stages=stages)
               for tiles, warps, stages in AUTOTUNE_CONFIGS[name]]
    return triton.autotune(configs=configs, key=_TUNING_KEY)(kernel)


_KERNELS = dict(banded_fwd=kernels.banded_fwd_kernel, toeplitz_fwd=kernels.toeplitz_fwd_kernel,
                banded_wgrad=kernels.banded_wgrad_kernel)
_TUNED = {name: _tuned(kernel, name) for name, kernel in _KERNELS.items()}


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision for operands of ``dtype``, read from PyTorch's switch now.

    Args:
        dtype (torch.dtype): Dtype of the conv's operands.

    Returns:
        str: 'tf32' for fp32 while ``torch.backends.cudnn.allow_tf32`` is on, else 'ieee'
        (fp32 on CUDA-core FMAs; fp16/bf16 ignore it and use tensor cores).
    """
    return 'tf32' if dtype == torch.float32 and fp32_convs_use_tf32() else 'ieee'


def _launch(name: str, grid: Callable[[dict], tuple], pointers: tuple, shape: torch.Size,
            config: dict | None, *extra: int, **constants) -> None:
    """Runs kernel ``name`` autotuned (CUDA, ``config`` None) or with pinned tiles."""
    n, c, h, w = shape
    constants['ALIGN'] = width_alignment(w)
    sizes = (n, c, h, w) + tuple(triton.next_power_of_2(size) for size in (n, h, w)) + extra
    with torch.cuda.device(pointers[0].device) if pointers[0].is_cuda else nullcontext():
        if config is None and not interpreting():
            _TUNED[name][grid](*pointers, *sizes, **constants)
        else:
            meta = {**constants, **(config or INTERPRETER_CONFIGS[name])}
            _KERNELS[name][grid(meta)](*pointers, *sizes, **meta)


def _forward(name: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
             config: dict | None) -> torch.Tensor:
    _check_device(x)
    n, c, h, w = x.shape
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    # The bias pointer is never read without HAS_BIAS; any tensor serves as a placeholder.
    pointers = (x, weight, weight if bias is None else bias, y)
    constants = dict(K=weight.shape[-1], HAS_BIAS=bias is not None,
                     PRECISION=dot_precision(x.dtype), UPCAST=_upcast(x))
    if name == 'banded_fwd':
        def grid(meta: dict) -> tuple[int, int]:
            return triton.cdiv(n * h, meta['BLOCK_M']) * triton.cdiv(w, meta['BLOCK_W']), c
    else:
        constants['BLOCK_M'] = min(64, max(16, triton.next_power_of_2(n)))

        def grid(meta: dict) -> tuple[int, int, int]:
            return triton.cdiv(h * w, meta['BLOCK_N']), triton.cdiv(n, meta['BLOCK_M']), c
    _launch(name, grid, pointers, x.shape, config, **constants)
    return y


def banded_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   config: dict | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=K // 2, groups=C)`` with the banded kernel.

    Args:
        x (torch.Tensor): Input (N, C, H, W), contiguous.
        weight (torch.Tensor): Kernel (C, 1, K, K), contiguous, K odd, dtype of ``x``.
        bias (torch.Tensor, optional): Bias (C,) of the dtype of ``x``, or None.
        config (dict, optional): Pinned ``BLOCK_M``, ``BLOCK_W`` and ``H_MAJOR``; None
            autotunes on CUDA and uses ``INTERPRETER_CONFIGS`` under the interpreter.
            Defaults to None.

    Returns:
        torch.Tensor: Output (N, C, H, W), contiguous, dtype of ``x``.
    """
    return _forward('banded_fwd', x, weight, bias, config)


def toeplitz_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     config: dict | None = None) -> torch.Tensor:
    """The conv as a dense-Toeplitz GEMM per channel, images as M (small maps only).

    Args:
        x (torch.Tensor): Input (N, C, H, W), contiguous, ``H * W <= TOEPLITZ_MAX_PIXELS``.
        weight (torch.Tensor): Kernel (C, 1, K, K), contiguous, K odd, dtype of ``x``.
        bias (torch.Tensor, optional): Bias (C,) of the dtype of ``x``, or None.
        config (dict, optional): Pinned ``BLOCK_N``/``BLOCK_K`` and optionally ``BLOCK_M``
            (else the images rounded up to a power of two, 16 to 64), see
            :func:`banded_forward`. Defaults to None.

    Returns:
        torch.Tensor: Output (N, C, H, W), contiguous, dtype of ``x``.
    """
    return _forward('toeplitz_fwd', x, weight, bias, config)


def banded_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int,
                       config: dict | None = None,
                       num_splits: int | None = None) -> torch.Tensor:
    """Weight gradient of the conv, reduced over images and space in fp32, deterministically.

    Args:
        x (torch.Tensor): Forward input (N, C, H, W), contiguous.
        grad_out (torch.Tensor): Output gradient (N, C, H, W), contiguous, dtype of ``x``.
        kernel_size (int): K (odd).
        config (dict, optional): Pinned ``BLOCK_M``, ``GROUP`` and ``H_MAJOR`` (``BLOCK_W``
            follows from K and W, see :func:`wgrad_tile`), see :func:`banded_forward`.
            Defaults to None.
        num_splits (int, optional): Programs sharing one (channel, kernel row, column tile)
            reduction; None picks enough to fill the GPU. Defaults to None.

    Returns:
        torch.Tensor: Gradient (C, 1, K, K) in fp32.
    """
    _check_device(x)
    n, c, h, w = x.shape
    k = kernel_size
    block_w, span = wgrad_tile(k, w)
    slots_w = triton.cdiv(w, block_w)
    if num_splits is None:
        num_splits = max(1, min(triton.cdiv(n * h, 64),
                                triton.cdiv(TARGET_PROGRAMS, slots_w * c * k)))
    partial = torch.empty(num_splits * slots_w, c, k, k, device=x.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int]:
        return (num_splits * slots_w * c * triton.cdiv(k, meta['GROUP']), )

    _launch('banded_wgrad', grid, (x, grad_out, partial), x.shape, config, num_splits, K=k,
            PRECISION=dot_precision(x.dtype), UPCAST=_upcast(x), BLOCK_W=block_w, SPAN=span)
    return partial.sum(0).unsqueeze(1)


def _flipped_input_grad(forward: Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return forward(grad_out, weight.flip((2, 3)).contiguous(), None)

    return input_grad


#: CUDA's limit on the second and third grid dimensions, where the channels go.
_MAX_GRID_CHANNELS = 65535


def _supported(shape: tuple[int, int, int, int], kernel_size: int, dtype: torch.dtype) -> bool:
    return (dtype in _DTYPES and kernel_size % 2 == 1 and min(shape) > 0
            and shape[1] <= _MAX_GRID_CHANNELS)


def _toeplitz_supported(shape: tuple[int, int, int, int], kernel_size: int,
                        dtype: torch.dtype) -> bool:
    return _supported(shape, kernel_size, dtype) and shape[2] * shape[3] <= TOEPLITZ_MAX_PIXELS


@dataclass(frozen=True)
class TritonKernelFamily:
    """One way of running all three passes of the conv, a candidate for ``impl='auto'``.

    Inputs are contiguous NCHW tensors on CUDA (or CPU under ``TRITON_INTERPRET=1``), the weight
    (C, 1, K, K) contiguous of the input's dtype, K odd; fp32 precision follows
    :func:`dot_precision` at call time.

    Args:
        name (str): Name shown by the dispatcher and the benchmark.
        forward (Callable): ``(x, weight, bias) -> y``, dtype of ``x``.
        input_grad (Callable): ``(grad_out, weight) -> grad_x``, dtype of ``grad_out``.
        weight_grad (Callable): ``(x, grad_out, K) -> grad_weight``, fp32 (C, 1, K, K).
        supports (Callable): ``((N, C, H, W), K, dtype) -> bool``: whether the family computes
            this conv (shape, kernel and dtype; the device is the caller's to check).
    """
    name: str
    forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    input_grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weight_grad: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    supports: Callable[[tuple[int, int, int, int], int, torch.dtype], bool]


FAMILIES: tuple[TritonKernelFamily, ...] = (
    TritonKernelFamily('triton_banded', banded_forward, _flipped_input_grad(banded_forward),
                       banded_weight_grad, _supported),
    TritonKernelFamily('triton_toeplitz', toeplitz_forward, _flipped_input_grad(toeplitz_forward),
                       banded_weight_grad, _toeplitz_supported),
)

"""Tensor-core Triton kernels for the large-kernel depth-wise conv: two families for ``auto``.

A "same"-padded depth-wise conv has no channel contraction, so on tensor cores it has to be a
GEMM whose contraction runs over pixels, with the kernel spread into a Toeplitz matrix. Both
families generate that matrix tile by tile from the K x K kernel in registers (gathers served by
L1: one channel's kernel is K^2 elements, 3.8 KB at K = 31 in fp32), so **no Toeplitz tensor is
ever stored**; the only extra memory is the weight gradient's partial sums, at most
``NUM_SPLITS * cdiv(W, BLOCK_W) * C * K^2`` fp32 values (NUM_SPLITS > 1 only when
``cdiv(W, BLOCK_W) * C * K`` is under :data:`TARGET_PROGRAMS`; 5.9 MB for C = 384, K = 31,
W = 64). Nothing is saved for backward beyond what the caller keeps (x and the weight).

* ``triton_banded`` (any size). Rows of all images fold into M, h-major (``m = h * N + n``),
  so small batches still fill a tile. For kernel row ``i`` an output tile is
  ``X_i[:, band] @ T_i[band, :]`` with ``T_i[l, w] = weight[i, l - w + P]``, the band being
  ``BLOCK_W + K - 1`` input columns cut in 16-wide slices (the narrowest ``tl.dot`` operand).
  Multiply-adds per useful one in an interior tile: ``ceil16(BLOCK_W + K - 1) / K`` = 48/31 at
  K = 31 and BLOCK_W = 16 (64/31 at BLOCK_W = 32), which is why the tiles are 16 columns wide:
  a wider tile reuses each loaded input value more but wastes more of the band. Padding taps are
  not computed: slices start at the band's first column inside the image, and kernel rows that
  miss every row of a tile are skipped (exactly, since an h-major tile of ``N >= BLOCK_M`` images
  shares one output row), so at R = 16, K = 31 the tile computes the valid taps only. Tiles of
  64-128 rows give each 16 x 16 kernel slice 64-128 uses; 2-3 pipeline stages of (128 x 16)
  operand slices fit well inside the H100's 228 KB of shared memory per SM.
* ``triton_toeplitz`` (maps of at most :data:`TOEPLITZ_MAX_PIXELS` pixels). Per channel
  ``Y = X @ T`` with the images as M and ``T`` the (HW x HW) Toeplitz-of-Toeplitz matrix,
  contracted only over the input rows within reach of the output block. When ``K >= 2R - 1``
  every entry of ``T`` is a valid tap, so nothing is wasted but the padding of M to 16 images;
  the tiles are the large (up to 64 x 128 x 32) GEMM tiles tensor cores like. The pixel limit
  keeps the gathered T tiles cheap against the GEMM and the band waste small (at R = 32, K = 31
  only 57% of T is non-zero; beyond that the banded family wins).
* Input gradient: "same" padding with an odd kernel is self-adjoint up to flipping the kernel in
  both directions, so both families run their forward on ``grad_out`` with the flipped kernel.
* Weight gradient (shared by both families): for each (channel, kernel row ``i``, column tile)
  ``S = X_i[:, span]^T @ dY[:, tile]`` on tensor cores, reduced over the rows of all images that
  kernel row ``i`` reaches inside the image, then the band diagonals of ``S`` summed into
  ``dW[i, :]``. Programs write disjoint partial slots which are summed in a fixed order: no
  atomics, bitwise reproducible. SPAN (a power of two, >= 16) covers the band or the whole row,
  whichever is narrower: at K = 31 it wastes 64/31 in wide maps and nothing at W = 16.

Precision (decided once, in :func:`dot_precision`, at call time): fp32 inputs follow
``torch.backends.cudnn.allow_tf32`` like PyTorch's own fp32 convs. On, they run on TF32 tensor
cores (``input_precision='tf32'``): each operand keeps 10 mantissa bits, so every product is off
by at most :data:`TF32_PRODUCT_BOUND` (2^-9, truncation on both operands) of its magnitude and
``|y - y_exact| <= 2^-9 * sum_k |x_k w_k|`` plus fp32 accumulation error; tested in that form.
Off, they stay fp32-accurate on CUDA-core FMAs (``'ieee'``, within 1e-5 relative). fp16 and bf16
always run on tensor cores. Every kernel accumulates in fp32.

Expected on one H100 (estimates from the tile counts above; **no GPU has measured these
kernels**), for the paper's Table 1 stack (24 layers, (64, 384, R, R), K = 31): forward R = 16
about 0.5-1 ms in TF32 (toeplitz), 2-4 ms fp32-accurate; R = 64 40-60 ms in TF32 (banded,
about 5.6 TFLOP of tensor-core work for 3.6 TFLOP of valid taps); bf16 1.5-2x faster than TF32.
The benchmark command of ``tools/analysis`` decides; ``auto`` keeps the fastest path per pass.

Autotuning: 3 candidates per kernel, keyed on K, the dot precision, the dtypes and the powers of
two of N, H and W, so new sizes inside a bucket neither tune nor compile again. Under Triton's
interpreter (``TRITON_INTERPRET=1``, CPU tensors, tests) the fixed ``INTERPRETER_*`` tiles run.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import triton

from . import _triton_tc_kernels as kernels
from ._triton_depthwise import _check_device, _upcast, interpreting

#: Largest H * W the dense-Toeplitz family takes (R = 32).
TOEPLITZ_MAX_PIXELS = 1024

#: Relative error bound of one TF32 tensor-core product (both operands truncated to 10 bits).
TF32_PRODUCT_BOUND = 2.0**-9

#: Enough programs in flight to fill an H100 (132 SMs) several times over.
TARGET_PROGRAMS = 4 * 132

#: Tiles used under the interpreter (and by tests that pin a configuration).
INTERPRETER_CONFIGS = dict(banded_fwd=dict(BLOCK_M=16, BLOCK_W=16),
                           toeplitz_fwd=dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=16),
                           banded_wgrad=dict(BLOCK_M=16))

# Autotune candidates: (tile sizes, num_warps, num_stages). All are compiled for sm_90 by
# tests/test_ops/test_triton_tc_compile.py.
AUTOTUNE_CONFIGS = dict(
    banded_fwd=[(dict(BLOCK_M=128, BLOCK_W=16), 4, 3), (dict(BLOCK_M=64, BLOCK_W=16), 4, 3),
                (dict(BLOCK_M=128, BLOCK_W=32), 8, 3)],
    toeplitz_fwd=[(dict(BLOCK_N=128, BLOCK_K=32), 4, 3), (dict(BLOCK_N=64, BLOCK_K=32), 4, 3),
                  (dict(BLOCK_N=128, BLOCK_K=64), 8, 3)],
    banded_wgrad=[(dict(BLOCK_M=64), 4, 3), (dict(BLOCK_M=128), 4, 3), (dict(BLOCK_M=128), 8, 2)])

_TUNING_KEY = ['N_BUCKET', 'H_BUCKET', 'W_BUCKET', 'K', 'PRECISION']
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
    return 'tf32' if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else 'ieee'


def _launch(name: str, grid: Callable[[dict], tuple], pointers: tuple, shape: torch.Size,
            config: dict | None, *extra: int, **constants) -> None:
    """Runs kernel ``name`` autotuned (CUDA, ``config`` None) or with pinned tiles."""
    n, c, h, w = shape
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
        config (dict, optional): Pinned ``BLOCK_M``/``BLOCK_W``; None autotunes on CUDA and
            uses ``INTERPRETER_CONFIGS`` under the interpreter. Defaults to None.

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
        config (dict, optional): Pinned ``BLOCK_M`` (``BLOCK_W`` follows from K and W, see
            :func:`wgrad_tile`), see :func:`banded_forward`. Defaults to None.
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
        num_splits = max(1, min(triton.cdiv(n * h, 64), triton.cdiv(TARGET_PROGRAMS, slots_w * c * k)))
    partial = torch.empty(num_splits * slots_w, c, k, k, device=x.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int]:
        return (num_splits * slots_w * c * k, )

    _launch('banded_wgrad', grid, (x, grad_out, partial), x.shape, config, num_splits, K=k,
            PRECISION=dot_precision(x.dtype), UPCAST=_upcast(x), BLOCK_W=block_w, SPAN=span)
    return partial.sum(0).unsqueeze(1)


def _flipped_input_grad(forward: Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return forward(grad_out, weight.flip((2, 3)).contiguous(), None)

    return input_grad


def _supported(shape: tuple[int, int, int, int], kernel_size: int, dtype: torch.dtype) -> bool:
    return dtype in _DTYPES and kernel_size % 2 == 1 and min(shape) > 0


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

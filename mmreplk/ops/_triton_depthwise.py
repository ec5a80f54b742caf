"""Triton kernels for the "same"-padded, stride-1 depth-wise convolution (forward and backward).

Imported lazily by :class:`mmreplk.ops.backends.TritonBackend` when the Triton path is used, so
importing ``mmreplk`` never needs Triton.

Design (NCHW contiguous; one program = one output tile of one channel, its rows running over the
rows of all images of that channel stacked): a depth-wise conv has no channel contraction, so its
data reuse is purely spatial. For kernel row ``i`` the output tile is a matrix product
``X_i @ T_i``, where ``X_i`` holds the input rows shifted by ``i`` together with their horizontal
halo and ``T_i`` is the banded (Toeplitz) matrix built from kernel row ``i``
(``T_i[l, w] = weight[i, l - w]``). Writing the conv as ``tl.dot`` lets Triton tile it in
registers and shared memory: every loaded input value is reused across the tile's output
columns, every kernel value across its rows. The band costs ``ceil16(BLOCK_W + K - 1) / K``
multiply-adds per useful one (48 / 31 at K = 31, BLOCK_W = 16). fp32 operands use
``input_precision='ieee'`` (CUDA-core FMAs, no TF32 rounding); fp16/bf16 operands go to tensor
cores, whose products are exact in the fp32 accumulator. Accumulation is always fp32.

* input gradient: the same kernel run on the output gradient with the kernel flipped in both
  directions ("same" padding with an odd kernel is its own adjoint up to that flip);
* weight gradient: for kernel row ``i`` the program accumulates ``dY^T @ X_i`` over every tile of
  every image of its channel and finally sums the band diagonals, ``dW[i, j] = sum_w S[w, w + j]``.
  Programs are ordered kernel-row fastest so the ``K`` programs of one channel stream the same
  tiles through L2 together.

On CUDA the tile shapes are autotuned per K, dtype and N, H, W rounded up to powers of two. Under
``TRITON_INTERPRET=1`` (tests on CPU tensors) a fixed small configuration is used, since the
autotuner needs a GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

#: Tile configurations used under the interpreter (and by tests that pin a configuration).
INTERPRETER_FWD_CONFIG = dict(BLOCK_H=16, BLOCK_W=16)
INTERPRETER_WGRAD_CONFIG = dict(BLOCK_H=16, BLOCK_W=16)

#: Enough programs in flight to fill an H100 (132 SMs) several times over.
_TARGET_PROGRAMS = 4 * 132


def _configs(shapes: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    return [
        triton.Config(dict(BLOCK_H=bh, BLOCK_W=bw), num_warps=warps, num_stages=stages)
        for bh, bw, warps, stages in shapes
    ]


# Autotune candidates (BLOCK_H, BLOCK_W, num_warps, num_stages), all compiled for sm_90 by
# test_every_autotune_config_compiles_for_h100. In the fp32 path tall tiles give each thread a
# 4x4 accumulator block: about 0.3-0.4 shared-memory operand loads per FMA and no register
# spills in the sm_90 cubins inspected with cuobjdump. Three each: on an H100, 13 first calls
# with 8 + 5 candidates spent 146 s compiling and tuning.
_FWD_SHAPES = [(128, 16, 4, 2), (256, 16, 8, 2), (64, 32, 4, 2)]
_WGRAD_SHAPES = [(64, 32, 4, 2), (128, 32, 8, 2), (64, 16, 4, 3)]

#: Arguments the autotuners key on: sizes rounded up to powers of two, so images of many sizes
#: (whole-image evaluation, multi-scale testing) reuse one tuning per bucket.
_TUNING_KEY = ['N_BUCKET', 'H_BUCKET', 'W_BUCKET', 'K']


def _span(args: dict) -> int:
    """Power-of-two width of the halo'd input rows one weight-gradient tile reads."""
    return triton.next_power_of_2(args['BLOCK_W'] + args['K'] - 1)


@triton.jit
def _row_bases(rows, N, C, H, W, c):
    """Offsets of the rows of a tile in the flattened (image, row) space of channel ``c``."""
    image = rows // H
    return (image.to(tl.int64) * C + c) * H * W, rows % H, rows < N * H


@triton.jit
def _dwconv_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                       K: tl.constexpr, HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr,
                       BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    # Tiles run over the rows of all images of one channel stacked, so small feature maps still
    # fill a tall tile and every program of a channel shares its kernel through the cache.
    pid_tile = tl.program_id(0)
    c = tl.program_id(1)
    tiles_w = tl.cdiv(W, BLOCK_W)
    rows = (pid_tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    w0 = (pid_tile % tiles_w) * BLOCK_W
    base, h, row_ok = _row_bases(rows, N, C, H, W, c)

    out_w = tl.arange(0, BLOCK_W)
    # The banded contraction runs in 16-wide slices, the narrowest tl.dot accepts.
    chunk = tl.arange(0, 16)
    acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for i in range(K):
        in_h = h + (i - K // 2)
        in_ok = row_ok & (in_h >= 0) & (in_h < H)
        in_row = base + in_h * W
        for q in range((BLOCK_W + K + 14) // 16):
            span = q * 16 + chunk
            in_cols = w0 - K // 2 + span
            col_ok = (in_cols >= 0) & (in_cols < W)
            a = tl.load(x_ptr + in_row[:, None] + in_cols[None, :],
                        mask=in_ok[:, None] & col_ok[None, :], other=0.0)
            tap = span[:, None] - out_w[None, :]
            band = tl.load(w_ptr + (c * K + i) * K + tap, mask=(tap >= 0) & (tap < K), other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                band = band.to(tl.float32)
            acc = tl.dot(a, band, acc, input_precision='ieee')
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(tl.float32)
    cols = w0 + out_w
    tl.store(y_ptr + (base + h * W)[:, None] + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (cols < W)[None, :])


@triton.jit
def _dwconv_wgrad_kernel(x_ptr, dy_ptr, part_ptr, N, C, H, W, NUM_SPLITS, N_BUCKET, H_BUCKET,
                         W_BUCKET, K: tl.constexpr, UPCAST: tl.constexpr, BLOCK_H: tl.constexpr,
                         BLOCK_W: tl.constexpr, SPAN: tl.constexpr):
    pid = tl.program_id(0)
    i = pid % K
    c = (pid // K) % C
    split = pid // (K * C)
    tiles_w = tl.cdiv(W, BLOCK_W)

    tile_h = tl.arange(0, BLOCK_H)
    tile_w = tl.arange(0, BLOCK_W)
    span = tl.arange(0, SPAN)
    acc = tl.zeros((BLOCK_W, SPAN), dtype=tl.float32)
    for t in range(split, tl.cdiv(N * H, BLOCK_H) * tiles_w, NUM_SPLITS):
        rows = (t // tiles_w) * BLOCK_H + tile_h
        w0 = (t % tiles_w) * BLOCK_W
        base, h, row_ok = _row_bases(rows, N, C, H, W, c)
        cols = w0 + tile_w
        grad = tl.load(dy_ptr + (base + h * W)[:, None] + cols[None, :],
                       mask=row_ok[:, None] & (cols < W)[None, :], other=0.0)
        in_h = h + (i - K // 2)
        in_cols = w0 - K // 2 + span
        xs = tl.load(x_ptr + (base + in_h * W)[:, None] + in_cols[None, :],
                     mask=(row_ok & (in_h >= 0) & (in_h < H))[:, None]
                     & ((in_cols >= 0) & (in_cols < W))[None, :], other=0.0)
        if UPCAST:
            grad = grad.to(tl.float32)
            xs = xs.to(tl.float32)
        acc = tl.dot(tl.trans(grad), xs, acc, input_precision='ieee')
    # acc[w, l] pairs output column w with input column l of the halo'd row: tap j = l - w.
    diagonal = span[None, :] - tile_w[:, None]
    out = part_ptr + ((split * C + c) * K + i) * K
    for j in range(K):
        tl.store(out + j, tl.sum(tl.sum(tl.where(diagonal == j, acc, 0.0), axis=1), axis=0))


_fwd_tuned = triton.autotune(configs=_configs(_FWD_SHAPES), key=_TUNING_KEY)(_dwconv_fwd_kernel)
_wgrad_with_span = triton.heuristics(dict(SPAN=_span))(_dwconv_wgrad_kernel)
_wgrad_tuned = triton.autotune(configs=_configs(_WGRAD_SHAPES), key=_TUNING_KEY)(_wgrad_with_span)


def _buckets(*sizes: int) -> tuple[int, ...]:
    return tuple(triton.next_power_of_2(size) for size in sizes)


def interpreting() -> bool:
    """Whether the kernels were built for Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return isinstance(_dwconv_fwd_kernel, InterpretedFunction)


def _upcast(x: torch.Tensor) -> bool:
    """Whether dot operands must be widened to fp32 first.

    Triton 3.9's interpreter multiplies bf16 ``tl.dot`` operands as their raw uint16 bit
    patterns; widening is exact (bf16 products are exact in fp32), so the interpreter still checks
    the kernel's indexing while the GPU keeps native bf16 tensor-core dots.
    """
    return interpreting() and x.dtype == torch.bfloat16


def _check_device(x: torch.Tensor) -> None:
    if not x.is_cuda and not interpreting():
        raise RuntimeError(
            f'the Triton depth-wise conv needs a CUDA tensor, got one on {x.device}; use '
            "impl='auto' (or set TRITON_INTERPRET=1 before importing triton, for tests only)")


def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 config: dict | None = None) -> torch.Tensor:
    """Launches the forward kernel on contiguous NCHW ``x`` and a (C, 1, K, K) ``weight``.

    Args:
        x (torch.Tensor): Input (N, C, H, W), contiguous.
        weight (torch.Tensor): Kernel (C, 1, K, K), contiguous, same dtype as ``x``.
        bias (torch.Tensor, optional): Bias (C,), or None.
        config (dict, optional): Pinned ``BLOCK_H``/``BLOCK_W``; None autotunes on CUDA and uses
            :data:`INTERPRETER_FWD_CONFIG` under the interpreter. Defaults to None.

    Returns:
        torch.Tensor: Output (N, C, H, W) in the dtype of ``x``.
    """
    _check_device(x)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    # The pointer is never read without HAS_BIAS; any tensor serves as a placeholder.
    b = bias if bias is not None else weight
    args = (x, weight, b, y, n, c, h, w, *_buckets(n, h, w))
    if config is None and not interpreting():
        def grid(meta: dict) -> tuple[int, int]:
            return triton.cdiv(n * h, meta['BLOCK_H']) * triton.cdiv(w, meta['BLOCK_W']), c

        _fwd_tuned[grid](*args, K=k, HAS_BIAS=bias is not None, UPCAST=False)
    else:
        config = config or INTERPRETER_FWD_CONFIG
        grid = (triton.cdiv(n * h, config['BLOCK_H']) * triton.cdiv(w, config['BLOCK_W']), c)
        _dwconv_fwd_kernel[grid](*args, K=k, HAS_BIAS=bias is not None, UPCAST=_upcast(x),
                                 **config)
    return y


def conv_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int,
                     config: dict | None = None, num_splits: int | None = None) -> torch.Tensor:
    """Weight gradient of the conv, reduced over batch and space in fp32.

    Args:
        x (torch.Tensor): Forward input (N, C, H, W), contiguous.
        grad_out (torch.Tensor): Output gradient (N, C, H, W), contiguous, dtype of ``x``.
        kernel_size (int): K.
        config (dict, optional): Pinned ``BLOCK_H``/``BLOCK_W``, see :func:`conv_forward`.
            Defaults to None.
        num_splits (int, optional): Programs sharing one (channel, kernel row) reduction; None
            picks enough to fill the GPU. Defaults to None.

    Returns:
        torch.Tensor: Gradient (C, 1, K, K) in fp32.
    """
    _check_device(x)
    n, c, h, w = x.shape
    k = kernel_size
    if num_splits is None:
        num_splits = max(1, min(n, triton.cdiv(_TARGET_PROGRAMS, c * k)))
    partial = torch.empty(num_splits, c, k, k, device=x.device, dtype=torch.float32)
    grid = (num_splits * c * k, )
    args = (x, grad_out, partial, n, c, h, w, num_splits, *_buckets(n, h, w))
    if config is None and not interpreting():
        _wgrad_tuned[grid](*args, K=k, UPCAST=False)
    else:
        config = config or INTERPRETER_WGRAD_CONFIG
        _wgrad_with_span[grid](*args, K=k, UPCAST=_upcast(x), **config)
    return partial.sum(0).unsqueeze(1)

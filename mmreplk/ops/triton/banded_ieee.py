"""The first Triton kernel (backend ``triton``): banded products, fp32-accurate in fp32.

Design (NCHW contiguous; one program = one output tile of one channel, its rows running over the
rows of all images of that channel stacked): a depth-wise conv has no channel contraction, so its
data reuse is purely spatial. For kernel row ``i`` the output tile is a matrix product
``X_i @ T_i``, where ``X_i`` holds the input rows shifted by ``i`` together with their horizontal
halo and ``T_i`` is the banded (Toeplitz) matrix built from kernel row ``i``
(``T_i[l, w] = weight[i, l - w]``). Writing the conv as ``tl.dot`` lets Triton tile it in
registers and shared memory: every loaded input value is reused across the tile's output
columns, every kernel value across its rows. The band costs ``ceil16(BLOCK_W + K - 1) / K``
multiply-adds per useful one (48 / 31 at K = 31, BLOCK_W = 16). fp32 operands always use
``input_precision='ieee'`` (CUDA-core FMAs, no TF32 rounding); fp16/bf16 operands go to tensor
cores, whose products are exact in the fp32 accumulator. Accumulation is always fp32.

* input gradient: the forward on the output gradient with the kernel flipped (the backend's);
* weight gradient: for kernel row ``i`` the program accumulates ``dY^T @ X_i`` over every tile of
  every image of its channel and finally sums the band diagonals, ``dW[i, j] = sum_w S[w, w + j]``.
  Programs are ordered kernel-row fastest so the ``K`` programs of one channel stream the same
  tiles through L2 together.

Measured on an H100, 5x slower than PyTorch's NCHW kernel at every cell of the paper's Table 1,
so ``auto`` does not measure it; the tensor-core kernels (:mod:`.banded`, :mod:`.toeplitz`)
replace it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import SIZE_ARGS, TARGET_PROGRAMS, Kernel, dot_acc


@triton.jit
def _row_bases(rows, N, C, H, W, c):
    """Offsets of the rows of a tile in the flattened (image, row) space of channel ``c``."""
    image = rows // H
    return (image.to(tl.int64) * C + c) * H * W, rows % H, rows < N * H


@triton.jit(do_not_specialize=SIZE_ARGS)
def forward_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                   K: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                   UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_H: tl.constexpr,
                   BLOCK_W: tl.constexpr):
    # Tiles run over the rows of all images of one channel stacked, so small feature maps still
    # fill a tall tile and every program of a channel shares its kernel through the cache.
    W = W // ALIGN * ALIGN
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
            acc = dot_acc(a, band, acc, PRECISION, UPCAST)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(tl.float32)
    cols = w0 + out_w
    tl.store(y_ptr + (base + h * W)[:, None] + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (cols < W)[None, :])


@triton.jit(do_not_specialize=SIZE_ARGS + ['NUM_SPLITS'])
def weight_grad_kernel(x_ptr, dy_ptr, part_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                       NUM_SPLITS, K: tl.constexpr, PRECISION: tl.constexpr,
                       UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_H: tl.constexpr,
                       BLOCK_W: tl.constexpr, SPAN: tl.constexpr):
    W = W // ALIGN * ALIGN
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
        acc = dot_acc(tl.trans(grad), xs, acc, PRECISION, UPCAST)
    # acc[w, l] pairs output column w with input column l of the halo'd row: tap j = l - w.
    diagonal = span[None, :] - tile_w[:, None]
    out = part_ptr + ((split * C + c) * K + i) * K
    for j in range(K):
        tl.store(out + j, tl.sum(tl.sum(tl.where(diagonal == j, acc, 0.0), axis=1), axis=0))


def span(meta: dict) -> int:
    """Power-of-two width of the halo'd input rows one weight-gradient tile reads."""
    return triton.next_power_of_2(meta['BLOCK_W'] + meta['K'] - 1)


# Autotune candidates: few, since auto never runs this kernel (on an H100, 13 first calls with
# 8 + 5 candidates spent 146 s compiling and tuning). No 16-wide forward tile: 128 x 16 and
# 256 x 16 spilled 16-32 bytes in fp32 (sm_90, Triton 3.6 and 3.9).
FORWARD = Kernel(forward_kernel,
                 [(dict(BLOCK_H=128, BLOCK_W=32), 8, 2), (dict(BLOCK_H=64, BLOCK_W=32), 4, 2)],
                 interpreter_tiles=dict(BLOCK_H=16, BLOCK_W=16))
WEIGHT_GRAD = Kernel(triton.heuristics(dict(SPAN=span))(weight_grad_kernel),
                     [(dict(BLOCK_H=64, BLOCK_W=32), 4, 2), (dict(BLOCK_H=128, BLOCK_W=32), 8, 2)],
                     interpreter_tiles=dict(BLOCK_H=16, BLOCK_W=16))
KERNELS = (FORWARD, WEIGHT_GRAD)


def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            config: dict | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=K // 2, groups=C)``.

    Args:
        x (torch.Tensor): Input (N, C, H, W) on CUDA.
        weight (torch.Tensor): Kernel (C, 1, K, K), same dtype as ``x``.
        bias (torch.Tensor, optional): Bias (C,), or None.
        config (dict, optional): Pinned ``BLOCK_H``/``BLOCK_W``; None autotunes. Defaults to
            None.

    Returns:
        torch.Tensor: Output (N, C, H, W), contiguous, in the dtype of ``x``.
    """
    n, c, h, w = x.shape

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(n * h, meta['BLOCK_H']) * triton.cdiv(w, meta['BLOCK_W']), c

    return FORWARD.launch_conv(grid, x, weight, bias, config, PRECISION='ieee')


def weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int,
                config: dict | None = None, num_splits: int | None = None) -> torch.Tensor:
    """Weight gradient of the conv, reduced over batch and space in fp32.

    Args:
        x (torch.Tensor): Forward input (N, C, H, W) on CUDA.
        grad_out (torch.Tensor): Output gradient (N, C, H, W), dtype of ``x``.
        kernel_size (int): K.
        config (dict, optional): Pinned ``BLOCK_H``/``BLOCK_W``, see :func:`forward`.
            Defaults to None.
        num_splits (int, optional): Programs sharing one (channel, kernel row) reduction; None
            picks enough to fill the GPU. Defaults to None.

    Returns:
        torch.Tensor: Gradient (C, 1, K, K) in fp32.
    """
    n, c, h, w = x.shape
    k = kernel_size
    if num_splits is None:
        num_splits = max(1, min(n, triton.cdiv(TARGET_PROGRAMS, c * k)))
    partial = torch.empty(num_splits, c, k, k, device=x.device, dtype=torch.float32)
    WEIGHT_GRAD.launch(lambda meta: (num_splits * c * k, ), (x, grad_out, partial), x.shape,
                       num_splits, config=config, K=k, PRECISION='ieee')
    return partial.sum(0).unsqueeze(1)

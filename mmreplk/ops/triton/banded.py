"""Banded implicit GEMM on tensor cores (backend ``triton_banded``): any map size.

A "same"-padded depth-wise conv has no channel contraction, so on tensor cores it has to be a
GEMM whose contraction runs over pixels, with the kernel spread into a Toeplitz matrix, generated
tile by tile from the K x K kernel in registers (gathers served by L1: one channel's kernel is
K^2 elements, 3.8 KB at K = 31 in fp32): **no Toeplitz tensor is ever stored**. Tensor cores
have about 8x the FP32 CUDA-core rate (H100: ~1000 TF32 multiply-adds per clock per SM) while an
SM draws only some 25-40 bytes per clock from L2, so the kernel is bound by operand traffic, not
by multiply-adds: the tiles trade wasted multiply-adds for reuse.

Rows of all images fold into M, so small batches still fill a tile. For kernel row ``i`` an
output tile is ``X_i[:, band] @ T_i[band, :]`` with ``T_i[l, w] = weight[i, l - w + P]``, the
band being ``BLOCK_W + K - 1`` input columns cut in BLOCK_K-wide slices (16, the narrowest
``tl.dot`` operand, or 32). Multiply-adds per useful one in an interior tile:
``ceil(BLOCK_W + K - 1, BLOCK_K) / K``, at K = 31: 48/31 (BLOCK_W = 16), 64/31 (32), 96/31 (64).
Padding taps are skipped: slices start at the band's first input column inside the image
(rounded down to ``ALIGN``), and kernel rows that miss every row of the tile are not run.
Candidates: 128 x 16 and 64 x 32 *h-major* tiles (``m = h * N + n``: a tile shares one or a few
output rows, so the kernel-row skipping is exact; least waste; small maps), and 64 x 64 /
128 x 64 *n-major* tiles with 32-wide slices (``m = n * H + h``: a strip of one image, whose
consecutive kernel rows re-read mostly the same input rows, from L1; large maps). Counted in the
sm_90 code, a 128 x 64 x 32 step issues about 190 instructions per warp against 256 (TF32) or
128 (bf16) clocks of tensor-core work, so instruction issue caps it at about 68% / 47% of the
tensor-core peak (16-wide tiles: 17-28%).

Precision: fp32 follows PyTorch's switch for fp32 convs (:func:`.launch.dot_precision`): TF32
tensor cores while it allows them (every product within :data:`.launch.TF32_PRODUCT_BOUND` of
its magnitude), else fp32-accurate CUDA-core FMAs; fp16/bf16 always on tensor cores. Every
kernel accumulates in fp32. The weight gradient is :mod:`.weight_grad`'s.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import SIZE_ARGS, Kernel, dot_acc, dot_precision


@triton.jit(do_not_specialize=SIZE_ARGS)
def forward_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                   K: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                   UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_W: tl.constexpr, BLOCK_K: tl.constexpr, H_MAJOR: tl.constexpr):
    """One (BLOCK_M folded rows) x (BLOCK_W output columns) tile of channel ``program_id(1)``:
    ``acc += X_i[:, band] @ T_i[band, :]`` over the kernel rows ``i`` the tile's rows reach and
    the BLOCK_K-wide slices of input columns inside both the image and the tile's band."""
    P: tl.constexpr = K // 2
    W = W // ALIGN * ALIGN
    pid = tl.program_id(0)
    c = tl.program_id(1)
    tiles_w = tl.cdiv(W, BLOCK_W)
    m0 = (pid // tiles_w) * BLOCK_M
    w0 = (pid % tiles_w) * BLOCK_W
    rows = m0 + tl.arange(0, BLOCK_M)
    row_ok = rows < N * H
    if H_MAJOR:
        h = rows // N
        image = rows % N
        h_lo = m0 // N
        h_hi = tl.minimum(H - 1, (m0 + BLOCK_M - 1) // N)
    else:
        h = rows % H
        image = rows // H
        last = tl.minimum(m0 + BLOCK_M, N * H) - 1
        one_image = m0 // H == last // H
        h_lo = tl.where(one_image, m0 % H, 0)
        h_hi = tl.where(one_image, last % H, H - 1)
    plane = (image.to(tl.int64) * C + c) * H * W
    out_cols = w0 + tl.arange(0, BLOCK_W)

    # Kernel rows that reach some output row of the tile.
    i_lo = tl.maximum(0, P - h_hi)
    i_hi = tl.minimum(K, H + P - h_lo)
    # Slices start at the band's first column inside the image (rounded down to ALIGN) and stop
    # at its last one.
    col0 = tl.maximum(0, w0 - P) // ALIGN * ALIGN
    num_chunks = tl.cdiv(tl.minimum(W, w0 + BLOCK_W + P) - col0, BLOCK_K)
    chunk = tl.arange(0, BLOCK_K)

    acc = tl.zeros((BLOCK_M, BLOCK_W), dtype=tl.float32)
    # One flat loop over (kernel row, slice), so the software pipeline spans the whole
    # contraction instead of restarting every kernel row.
    for step in range((i_hi - i_lo) * num_chunks):
        i = i_lo + step // num_chunks
        in_h = h + (i - P)
        in_cols = col0 + (step % num_chunks) * BLOCK_K + chunk
        a = tl.load(x_ptr + (plane + in_h * W)[:, None] + in_cols[None, :],
                    mask=(row_ok & (in_h >= 0) & (in_h < H))[:, None] & (in_cols < W)[None, :],
                    other=0.0)
        # Toeplitz slice of kernel row i: T[l, w] = weight[i, l - w + P] inside the band.
        tap = in_cols[:, None] - out_cols[None, :] + P
        band = tl.load(w_ptr + (c * K + i) * K + tap, mask=(tap >= 0) & (tap < K), other=0.0)
        acc = dot_acc(a, band, acc, PRECISION, UPCAST)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(tl.float32)
    tl.store(y_ptr + (plane + h * W)[:, None] + out_cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=row_ok[:, None] & (out_cols < W)[None, :])


#: The widest tile, tuned on tensor cores only: on CUDA-core FMAs (fp32 with TF32 off) it
#: spilled 72-156 bytes per thread at unaligned widths (sm_90, Triton 3.6).
TENSOR_CORE_ONLY = dict(BLOCK_M=128, BLOCK_W=64, BLOCK_K=32, H_MAJOR=False)


def _keep(tiles: dict, dtype: torch.dtype, constexprs: dict) -> bool:
    on_fmas = dtype == torch.float32 and constexprs['PRECISION'] == 'ieee'
    return not (on_fmas and tiles == TENSOR_CORE_ONLY)


# Autotune candidates. 128 x 16 and 64 x 64 take 8 warps: with 4, fp32-accurate FMA tiles spilled
# 20-80 bytes per thread at unaligned widths (sm_90, Triton 3.6).
FORWARD = Kernel(forward_kernel,
                 [(dict(BLOCK_M=128, BLOCK_W=16, BLOCK_K=16, H_MAJOR=True), 8, 3),
                  (dict(BLOCK_M=64, BLOCK_W=32, BLOCK_K=16, H_MAJOR=True), 4, 3),
                  (dict(BLOCK_M=64, BLOCK_W=64, BLOCK_K=32, H_MAJOR=False), 8, 3),
                  (TENSOR_CORE_ONLY, 8, 3)],
                 interpreter_tiles=dict(BLOCK_M=16, BLOCK_W=16, BLOCK_K=16, H_MAJOR=True),
                 keep=_keep)
KERNELS = (FORWARD, )


def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            config: dict | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=K // 2, groups=C)`` with the banded kernel.

    Args:
        x (torch.Tensor): Input (N, C, H, W) on CUDA.
        weight (torch.Tensor): Kernel (C, 1, K, K), K odd, dtype of ``x``.
        bias (torch.Tensor, optional): Bias (C,) of the dtype of ``x``, or None.
        config (dict, optional): Pinned ``BLOCK_M``, ``BLOCK_W``, ``BLOCK_K`` and ``H_MAJOR``;
            None autotunes. Defaults to None.

    Returns:
        torch.Tensor: Output (N, C, H, W), contiguous, dtype of ``x``.
    """
    n, c, h, w = x.shape

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(n * h, meta['BLOCK_M']) * triton.cdiv(w, meta['BLOCK_W']), c

    return FORWARD.launch_conv(grid, x, weight, bias, config, PRECISION=dot_precision(x.dtype))

"""The tensor-core weight gradient, run by both tensor-core backends (``triton_banded`` and
``triton_toeplitz``).

Per (channel, group of GROUP kernel rows, column tile, split of the rows)
``S[(g, l), w] = X_{i0+g}[:, span]^T @ dY[:, tile]`` on tensor cores, the GROUP kernel rows
stacked in M so each output-gradient tile is loaded once for all of them, then the band
diagonals of ``S`` summed into ``dW[i0 + g, :]``. Programs write disjoint partial slots summed in
a fixed order: no atomics, bitwise reproducible. The only extra memory is those partial sums,
``NUM_SPLITS * cdiv(W, BLOCK_W) * C * K^2`` fp32 values (NUM_SPLITS > 1 only while
``cdiv(W, BLOCK_W) * C * K`` is under :data:`.launch.TARGET_PROGRAMS`; 3 MB for C = 384,
K = 31, W = 64).

The tile is 32 columns wide where its band still fits the power of two a 16-wide one needs
(:func:`tile`), else 16. The input columns a tile reads start at a multiple of ``ALIGN``, so where
W % 8 == 0 every row segment loads as 16-byte vectors; SPAN (a power of two, >= 16) covers the
band plus that rounding, or the whole row, whichever is narrower: at K = 31, 64/31
multiply-adds per useful one in wide maps, 16/16 at W = 16. Candidates: GROUP = 1 h-major (rows
where the kernel row leaves the image are skipped exactly) and GROUP = 2 or 4 n-major (input rows
re-read from L1); where SPAN is narrow only those stacking 64 rows (GROUP * SPAN, the M of the
product) are tuned, so every product runs on Hopper's ``wgmma``, not ``mma.sync``. Both
operands have the rows as contraction, which TF32 tensor cores only take after a transpose
through shared memory. Precision as in :mod:`.banded`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..precision import width_alignment
from .launch import SIZE_ARGS, TARGET_PROGRAMS, Kernel, dot_acc, dot_precision


@triton.jit(do_not_specialize=SIZE_ARGS + ['NUM_SPLITS'])
def weight_grad_kernel(x_ptr, dy_ptr, part_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                       NUM_SPLITS, K: tl.constexpr, PRECISION: tl.constexpr,
                       UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_W: tl.constexpr, SPAN: tl.constexpr, GROUP: tl.constexpr,
                       H_MAJOR: tl.constexpr):
    """GROUP kernel rows ``i0 + g`` of channel ``c`` over one column tile and one split of the
    row tiles: ``S[(g, l), w] = sum_m X_{i0+g}[m, base + l] dY[m, w0 + w]`` as one tensor-core
    product, then the band diagonals ``dW[i0 + g, j] = sum S[(g, l), w]`` over
    ``base + l - w0 - w + P = j`` into one partial slot per (split, column tile).
    ``BLOCK_W`` and ``SPAN`` come from :func:`tile`."""
    P: tl.constexpr = K // 2
    W = W // ALIGN * ALIGN
    # Kernel-row group fastest, channel slowest: the programs reading one channel's planes run
    # together and share them through L2.
    groups = tl.cdiv(K, GROUP)
    tiles_w = tl.cdiv(W, BLOCK_W)
    pid = tl.program_id(0)
    i0 = (pid % groups) * GROUP
    slot = (pid // groups) % (NUM_SPLITS * tiles_w)
    c = pid // (groups * NUM_SPLITS * tiles_w)
    split = slot // tiles_w
    w0 = (slot % tiles_w) * BLOCK_W
    # Rows where some kernel row of the group stays inside the image: one range when h-major.
    if H_MAJOR:
        m_lo = tl.maximum(0, P - i0 - GROUP + 1) * N
        m_hi = tl.minimum(H, H + P - i0) * N
    else:
        m_lo = 0
        m_hi = N * H
    # SPAN input columns from ``base`` (a multiple of ALIGN) cover every column the tile's band
    # reads in the image.
    base = tl.maximum(0, tl.minimum(tl.maximum(0, w0 - P) // ALIGN * ALIGN, W - SPAN))
    stack = tl.arange(0, GROUP * SPAN)
    shift = i0 + stack // SPAN - P
    in_cols = base + stack % SPAN
    stack_ok = (i0 + stack // SPAN < K) & (in_cols < W)
    out_cols = w0 + tl.arange(0, BLOCK_W)
    tile_m = tl.arange(0, BLOCK_M)

    acc = tl.zeros((GROUP * SPAN, BLOCK_W), dtype=tl.float32)
    for t in range(m_lo // BLOCK_M + split, tl.cdiv(m_hi, BLOCK_M), NUM_SPLITS):
        rows = t * BLOCK_M + tile_m
        row_ok = (rows >= m_lo) & (rows < m_hi)
        if H_MAJOR:
            h = rows // N
            image = rows % N
        else:
            h = rows % H
            image = rows // H
        plane = (image.to(tl.int64) * C + c) * H * W
        grad = tl.load(dy_ptr + (plane + h * W)[:, None] + out_cols[None, :],
                       mask=row_ok[:, None] & (out_cols < W)[None, :], other=0.0)
        in_h = h[:, None] + shift[None, :]
        xs = tl.load(x_ptr + plane[:, None] + in_h * W + in_cols[None, :],
                     mask=row_ok[:, None] & stack_ok[None, :] & (in_h >= 0) & (in_h < H),
                     other=0.0)
        acc = dot_acc(tl.trans(xs), grad, acc, PRECISION, UPCAST)
    acc = tl.reshape(acc, (GROUP, SPAN, BLOCK_W))
    tap = (base + tl.arange(0, SPAN))[:, None] - out_cols[None, :] + P
    kernel_rows = i0 + tl.arange(0, GROUP)
    out = part_ptr + ((slot * C + c) * K + kernel_rows) * K
    for j in range(K):
        diagonal = tl.sum(tl.sum(tl.where(tap[None, :, :] == j, acc, 0.0), axis=2), axis=1)
        tl.store(out + j, diagonal, mask=kernel_rows < K)


#: Rows of Hopper's warp-group MMA (``wgmma``) tile; a product with fewer rows in M compiles
#: to ``mma.sync``.
WGMMA_ROWS = 64


def fills_wgmma(group: int, span: int) -> bool:
    """Whether GROUP stacked kernel rows of SPAN columns fill whole ``wgmma`` tiles."""
    return group * span % WGMMA_ROWS == 0


def _keep(tiles: dict, dtype: torch.dtype, constexprs: dict) -> bool:
    # Narrow maps (SPAN 16 or 32) keep only the candidates stacking enough kernel rows.
    return fills_wgmma(tiles['GROUP'], constexprs['SPAN'])


# Autotune candidates. The stacked ones take 8 warps: with 4, unaligned widths spilled up to
# 520 bytes per thread (Triton 3.6's ptxas, K = 31, W = 127).
WEIGHT_GRAD = Kernel(weight_grad_kernel,
                     [(dict(BLOCK_M=64, GROUP=1, H_MAJOR=True), 4, 3),
                      (dict(BLOCK_M=32, GROUP=4, H_MAJOR=False), 8, 3),
                      (dict(BLOCK_M=64, GROUP=2, H_MAJOR=False), 8, 2)],
                     interpreter_tiles=dict(BLOCK_M=16, GROUP=1, H_MAJOR=True),
                     keep=_keep)
KERNELS = (WEIGHT_GRAD, )


def tile(kernel_size: int, width: int) -> tuple[int, int]:
    """``(BLOCK_W, SPAN)``: output columns per tile, input columns read.

    A tile's band is ``BLOCK_W + K - 1`` columns, plus the rounding of its first column down to
    the width's alignment (``(-P) mod ALIGN``, tiles starting at multiples of 16). SPAN, a power of
    two of at least 16, covers that or the whole row, whichever is narrower. The tile is 32
    columns wide where its band still fits the power of two a 16-wide tile needs (halving the
    loads per product at no extra waste), else 16.

    Args:
        kernel_size (int): K.
        width (int): W.

    Returns:
        tuple[int, int]: BLOCK_W and SPAN.
    """
    rounding = -(kernel_size // 2) % width_alignment(width)

    def band(block_w: int) -> int:
        return triton.next_power_of_2(block_w + kernel_size - 1 + rounding)

    block_w = 32 if width > 16 and band(32) <= band(16) else 16
    return block_w, max(16, min(band(block_w), triton.next_power_of_2(width)))


def weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int,
                config: dict | None = None, num_splits: int | None = None) -> torch.Tensor:
    """Weight gradient of the conv, reduced over images and space in fp32, deterministically.

    Args:
        x (torch.Tensor): Forward input (N, C, H, W) on CUDA.
        grad_out (torch.Tensor): Output gradient (N, C, H, W), dtype of ``x``.
        kernel_size (int): K (odd).
        config (dict, optional): Pinned ``BLOCK_M``, ``GROUP`` and ``H_MAJOR`` (``BLOCK_W``
            follows from K and W, see :func:`tile`); None autotunes. Defaults to None.
        num_splits (int, optional): Programs sharing one (channel, kernel row, column tile)
            reduction; None picks enough to fill the GPU. Defaults to None.

    Returns:
        torch.Tensor: Gradient (C, 1, K, K) in fp32.
    """
    n, c, h, w = x.shape
    k = kernel_size
    block_w, span = tile(k, w)
    slots_w = triton.cdiv(w, block_w)
    if num_splits is None:
        num_splits = max(1, min(triton.cdiv(n * h, 64),
                                triton.cdiv(TARGET_PROGRAMS, slots_w * c * k)))
    partial = torch.empty(num_splits * slots_w, c, k, k, device=x.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int]:
        return (num_splits * slots_w * c * triton.cdiv(k, meta['GROUP']), )

    WEIGHT_GRAD.launch(grid, (x, grad_out, partial), x.shape, num_splits, config=config, K=k,
                       PRECISION=dot_precision(x.dtype), BLOCK_W=block_w, SPAN=span)
    return partial.sum(0).unsqueeze(1)

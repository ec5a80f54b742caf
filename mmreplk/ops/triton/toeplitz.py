"""Dense Toeplitz GEMM per channel on tensor cores (backend ``triton_toeplitz``): small maps.

Per channel ``Y^T = T^T @ X^T``: the output pixels ``q`` are the GEMM's M (64-128 per tile), the
images its N (16-64 per tile) and the input pixels ``p`` the contraction, ``T`` being the
(HW x HW) Toeplitz-of-Toeplitz matrix ``T[p, q] = weight[hp - hq + P, wp - wq + P]``, generated
tile by tile from the K x K kernel in registers and contracted over the input rows within reach
of the output block only. Pixels, not images, are M so that a small batch still gives Hopper's
``wgmma`` the 64 rows per warp group it needs (images as M took 16-row ``mma.sync`` tiles
whenever the batch was <= 16).

When ``K >= 2R - 1`` every entry of ``T`` is a valid tap: nothing is wasted but the padding of the
images to 16, and each loaded input value serves 64-128 outputs; generating ``T`` costs integer
work that caps a step at about 50% (TF32) / 30% (bf16) of the tensor-core peak. At R = 32,
K = 31, 57% of ``T`` is non-zero; :data:`~mmreplk.ops.triton.TOEPLITZ_MAX_PIXELS` stops there,
where :mod:`.banded` takes over. Precision as in :mod:`.banded`; the weight gradient is
:mod:`.weight_grad`'s.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import TOEPLITZ_MAX_PIXELS
from .launch import SIZE_ARGS, Kernel, dot_acc, dot_precision


@triton.jit(do_not_specialize=SIZE_ARGS)
def forward_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, C, H, W, N_BUCKET, H_BUCKET, W_BUCKET,
                   K: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                   UPCAST: tl.constexpr, ALIGN: tl.constexpr, BLOCK_Q: tl.constexpr,
                   BLOCK_IMAGES: tl.constexpr, BLOCK_K: tl.constexpr):
    """``Y[q, images] = T^T[q, p] @ X^T[p, images]`` for BLOCK_Q output pixels ``q`` of channel
    ``program_id(2)``; ``p`` runs over the input rows within reach of the block's rows."""
    P: tl.constexpr = K // 2
    W = W // ALIGN * ALIGN
    pid_q = tl.program_id(0)
    pid_n = tl.program_id(1)
    c = tl.program_id(2)
    images = pid_n * BLOCK_IMAGES + tl.arange(0, BLOCK_IMAGES)
    image_ok = images < N
    plane = (images.to(tl.int64) * C + c) * H * W
    q0 = pid_q * BLOCK_Q
    q = q0 + tl.arange(0, BLOCK_Q)
    out_h = q // W
    out_w = q % W
    p_lo = tl.maximum(0, q0 // W - P) * W
    p_hi = tl.minimum(H, tl.minimum(H - 1, (q0 + BLOCK_Q - 1) // W) + P + 1) * W
    k = tl.arange(0, BLOCK_K)

    acc = tl.zeros((BLOCK_Q, BLOCK_IMAGES), dtype=tl.float32)
    for p0 in range(p_lo, p_hi, BLOCK_K):
        p = p0 + k
        tap_i = (p // W)[None, :] - out_h[:, None] + P
        tap_j = (p % W)[None, :] - out_w[:, None] + P
        toeplitz = tl.load(w_ptr + (c * K + tap_i) * K + tap_j,
                           mask=(tap_i >= 0) & (tap_i < K) & (tap_j >= 0) & (tap_j < K),
                           other=0.0)
        xt = tl.load(x_ptr + plane[None, :] + p[:, None],
                     mask=(p < p_hi)[:, None] & image_ok[None, :], other=0.0)
        acc = dot_acc(toeplitz, xt, acc, PRECISION, UPCAST)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(tl.float32)
    tl.store(y_ptr + plane[None, :] + q[:, None], acc.to(y_ptr.dtype.element_ty),
             mask=(q < H * W)[:, None] & image_ok[None, :])


# Autotune candidates. 128 pixels take 8 warps: with 4, fp32-accurate FMA tiles of 64 images
# spilled up to 500 bytes per thread (sm_90, Triton 3.6; 300 with BLOCK_K = 64, dropped).
FORWARD = Kernel(forward_kernel,
                 [(dict(BLOCK_Q=128, BLOCK_K=32), 8, 3), (dict(BLOCK_Q=64, BLOCK_K=32), 4, 3)],
                 interpreter_tiles=dict(BLOCK_Q=32, BLOCK_IMAGES=16, BLOCK_K=16))
KERNELS = (FORWARD, )


def image_block(batch: int) -> int:
    """Images per tile: the batch rounded up to a power of two, 16 to 64."""
    return min(64, max(16, triton.next_power_of_2(batch)))


def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            config: dict | None = None) -> torch.Tensor:
    """The conv as a dense-Toeplitz GEMM per channel (small maps only).

    Args:
        x (torch.Tensor): Input (N, C, H, W) on CUDA, ``H * W <= TOEPLITZ_MAX_PIXELS``.
        weight (torch.Tensor): Kernel (C, 1, K, K), K odd, dtype of ``x``.
        bias (torch.Tensor, optional): Bias (C,) of the dtype of ``x``, or None.
        config (dict, optional): Pinned ``BLOCK_Q``/``BLOCK_K`` and optionally
            ``BLOCK_IMAGES`` (else :func:`image_block`); None autotunes. Defaults to None.

    Returns:
        torch.Tensor: Output (N, C, H, W), contiguous, dtype of ``x``.
    """
    n, c, h, w = x.shape

    def grid(meta: dict) -> tuple[int, int, int]:
        return triton.cdiv(h * w, meta['BLOCK_Q']), triton.cdiv(n, meta['BLOCK_IMAGES']), c

    return FORWARD.launch_conv(grid, x, weight, bias, config, PRECISION=dot_precision(x.dtype),
                               BLOCK_IMAGES=image_block(n))

"""The CPU path of the depth-wise conv: oneDNN's fast kernels for forward and both gradients.

Measured on 2-core AVX2 x86 machines (torch 2.13, ``tools/analysis/benchmark_dwconv.py``):

* forward: oneDNN's direct depth-wise kernel on ``channels_last`` tensors is 6-15x faster than the
  NCHW path for K >= 11, which goes through im2col + GEMM; below K = 11 oneDNN runs NCHW through
  a direct kernel too, 2-3x faster than its ``channels_last`` one (K = 7 and 9);
* input gradient: the same forward kernel on the output gradient with the kernel flipped (the
  backend's, :meth:`mmreplk.ops.backends.DepthwiseBackend.input_grad`), 1.7x faster than
  autograd's;
* weight gradient: PyTorch's own is pathological for large kernels (e.g. 29 s for
  (4, 384, 32, 32), K = 31). It equals, per (image, channel) plane, a depth-wise conv of the padded
  input with the output gradient as the (H x W) kernel, summed over images; run that way it takes
  0.3 s. It wins once ``K^2 * H * W >= WGRAD_AS_CONV_MIN_WORK`` and loses below.
* fp16/bf16: AVX2 CPUs have no fast half-precision depth-wise kernel (10-40x slower than fp32),
  so half inputs are computed in fp32 and rounded back, which is also more accurate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Smallest K^2 * H * W for which the weight gradient runs as a per-plane conv (measured
#: crossover: K = 13 at 32 x 32 and K = 7 at 64 x 64 win, K = 7 at 32 x 32 and K = 13 at 16 x 16
#: lose).
WGRAD_AS_CONV_MIN_WORK = 13 * 13 * 32 * 32


#: Smallest K for which forward and input-gradient convs run on ``channels_last`` tensors (oneDNN
#: switches NCHW depth-wise convs to im2col + GEMM from K = 11 on).
CHANNELS_LAST_FORWARD_MIN_KERNEL = 11


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    kernel_size = weight.shape[-1]
    layout = (torch.channels_last if kernel_size >= CHANNELS_LAST_FORWARD_MIN_KERNEL else
              torch.contiguous_format)
    return F.conv2d(x.contiguous(memory_format=layout), weight, bias, padding=kernel_size // 2,
                    groups=weight.shape[0])


def conv_forward(x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    """The forward (and, on the flipped kernel, the input gradient) in plain PyTorch ops.

    Args:
        x (torch.Tensor): Input (N, C, H, W).
        weight (torch.Tensor): Kernel (C, 1, K, K).
        bias (torch.Tensor, optional): Bias (C,), or None.

    Returns:
        torch.Tensor: Output in the dtype of ``x``.
    """
    dtype = _compute_dtype(x.dtype)
    out = _conv(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))
    return out.to(x.dtype)


def weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Weight gradient (C, 1, K, K) of the "same" depth-wise conv, in the dtype of ``x``
    (fp16/bf16 computed in fp32).

    Args:
        x (torch.Tensor): Forward input (N, C, H, W).
        grad_out (torch.Tensor): Output gradient (N, C, H, W), dtype of ``x``.
        kernel_size (int): K.

    Returns:
        torch.Tensor: The gradient.
    """
    dtype = _compute_dtype(x.dtype)
    if dtype != x.dtype:
        return weight_grad(x.to(dtype), grad_out.to(dtype), kernel_size).to(x.dtype)
    n, c, h, w = x.shape
    pad = kernel_size // 2
    if kernel_size**2 * h * w >= WGRAD_AS_CONV_MIN_WORK:
        planes = F.pad(x, (pad, pad, pad, pad)).reshape(1, n * c, h + 2 * pad, w + 2 * pad)
        per_plane = F.conv2d(planes, grad_out.reshape(n * c, 1, h, w), groups=n * c)
        return per_plane.view(n, c, kernel_size, kernel_size).sum(0).unsqueeze(1)
    weight_shape = (c, 1, kernel_size, kernel_size)
    return torch.ops.aten.convolution_backward(
        grad_out.contiguous(memory_format=torch.channels_last),
        x.contiguous(memory_format=torch.channels_last), x.new_empty(weight_shape), None, [1, 1],
        [pad, pad], [1, 1], False, [0, 0], c, [False, True, False])[1]

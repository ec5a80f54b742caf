"""Accepted error of every depth-wise conv path, as max |actual - ref| / max |ref| against a
float64 ``F.conv2d`` on the same (already rounded) inputs.

Our paths ('auto', 'cpu', 'triton') and every fp32 path accumulate in fp32 or
wider, so the error is dominated by rounding the result to the output dtype: 2^-11 for fp16 and
2^-8 for bf16 (up to 2^-7 where a conversion truncates, as Triton's interpreter does for bf16),
plus fp32 summation error over up to K^2 * N * H * W terms.

PyTorch's own fp16/bf16 depth-wise convs on CPU ('nchw', 'channels_last' with a half input) round
intermediate results of the input gradient to the half dtype: measured up to 4.5e-3 (fp16) and
3.6e-2 (bf16), hence their looser bounds. 'auto' never runs them.
"""
import torch

TOLERANCES = {'fp32': 1e-5, 'fp16': 1e-3, 'bf16': 1e-2}
PYTORCH_HALF_CPU_TOLERANCES = {'fp16': 1e-2, 'bf16': 8e-2}
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def tolerance(impl: str, dtype_name: str, device: str = 'cpu') -> float:
    """The bound for one path, dtype and device."""
    if device == 'cpu' and impl in ('nchw', 'channels_last') and dtype_name != 'fp32':
        return PYTORCH_HALF_CPU_TOLERANCES[dtype_name]
    return TOLERANCES[dtype_name]

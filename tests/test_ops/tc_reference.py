"""float64 reference of the conv's three passes, and the errors the tensor-core kernel tests check.

Imported by the interpreter worker (a script run with this directory on ``sys.path``, after
setting TRITON_INTERPRET) and by the CUDA tests.
"""
import torch
import torch.nn.functional as F

from mmreplk.ops.triton.launch import TF32_PRODUCT_BOUND


def random_inputs(case: dict, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Seeded ``x``, ``weight``, ``bias`` (None without ``case['bias']``) and ``grad_out`` of a
    worker case whose ``shape`` is (N, C, H, W, K)."""
    torch.manual_seed(case.get('seed', 0))
    n, c, h, w, k = case['shape']
    x = torch.randn(n, c, h, w, dtype=dtype)
    weight = torch.randn(c, 1, k, k, dtype=dtype)
    bias = torch.randn(c, dtype=dtype) if case['bias'] else None
    return x, weight, bias, torch.randn(n, c, h, w, dtype=dtype)


def reference(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor) -> dict:
    """float64 output and gradients of the bias-free conv (the kernels add the bias last)."""
    x, weight = (t.double().requires_grad_() for t in (x, weight))
    out = F.conv2d(x, weight, padding=weight.shape[-1] // 2, groups=weight.shape[0])
    out.backward(grad_out.double())
    return dict(out=out.detach(), grad_x=x.grad, grad_w=weight.grad)


def errors(actual: torch.Tensor, expected: torch.Tensor, magnitude: torch.Tensor) -> dict:
    """``relative``: max |err| / max |ref|; ``tf32_bound``: the worst entry's error as a
    fraction of ``2^-9 * sum |a b| + 1e-5 * max |ref|``, ``magnitude`` holding ``sum |a b|``
    (the reference run on absolute values)."""
    expected, magnitude = expected.cpu(), magnitude.cpu()
    error = (actual.cpu().double() - expected).abs()
    scale = expected.abs().max()
    bound = TF32_PRODUCT_BOUND * magnitude + 1e-5 * scale
    return dict(relative=(error.max() / scale).item(), tf32_bound=(error / bound).max().item())

"""The ways to compute a depth-wise conv, pass by pass, that ``impl='auto'`` measures.

A backend computes the three passes of the "same"-padded, stride-1 depth-wise conv
``F.conv2d(x, weight, bias, padding=K // 2, groups=C)``: the forward, the input gradient and the
weight gradient. Backends are registered in :data:`DWCONV_BACKENDS` under the name a user forces
with ``impl=NAME``; :class:`~mmreplk.ops.dispatch.DepthwiseDispatcher` times every backend that
can run a pass and keeps the fastest, so a new kernel is one more registered class.

Each backend says what it cannot run (:meth:`DepthwiseBackend.unsupported`: a device, dtype or
size outside its reach; forcing it there is an error) and what ``auto`` should not measure
(:meth:`DepthwiseBackend.auto_skip`: results outside the project's accuracy bounds, or a pass
known to be so slow that measuring it once costs more than it can save).
"""
from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F
from mmengine.registry import Registry

from . import _cpu_depthwise
from .triton import MAX_GRID_CHANNELS, TOEPLITZ_MAX_PIXELS

#: Registered backends; the name is the ``impl`` that forces one.
DWCONV_BACKENDS = Registry('depth-wise conv backend')

#: The passes of a conv that are dispatched separately.
PASSES = ('forward', 'input_grad', 'weight_grad')

#: Shape of the conv's input (N, C, H, W).
Shape = tuple[int, int, int, int]

_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: Smallest K for which ``auto`` measures the Triton kernels (see TritonKernelBackend.auto_skip).
TRITON_MIN_KERNEL = 7
_HALF_DTYPES = (torch.float16, torch.bfloat16)



@functools.cache
def triton_available() -> bool:
    """Whether the Triton package can be imported (it ships with CUDA builds of torch); asked
    once, since a forced Triton impl asks on every call."""
    return importlib.util.find_spec('triton') is not None


class DepthwiseBackend:
    """One way to compute the forward, input gradient and weight gradient.

    Every pass returns the same values as ``F.conv2d(x, weight, bias, padding=K // 2, groups=C)``
    and its gradients, accumulated in fp32 or wider; the memory layout of a result is free (the
    op lays it out afterwards).
    """

    #: Name under which the backend is registered (set by :func:`_register`).
    name = ''

    def unsupported(self, pass_name: str, device: torch.device, dtype: torch.dtype,
                    kernel_size: int, shape: Shape) -> str | None:
        """Why this backend cannot run a pass here, or None when it can.

        Args:
            pass_name (str): One of :data:`PASSES`.
            device (torch.device): Device of the tensors.
            dtype (torch.dtype): Dtype of the tensors.
            kernel_size (int): K.
            shape (Shape): Input shape (N, C, H, W).

        Returns:
            str | None: The reason, phrased to follow "cannot run here: ".
        """
        return None

    def auto_skip(self, pass_name: str, device: torch.device, dtype: torch.dtype,
                  kernel_size: int, shape: Shape) -> str | None:
        """Why ``impl='auto'`` should not consider this backend for a pass it can run, or None.

        Same arguments as :meth:`unsupported`.
        """
        return None

    def forward(self, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        """The conv of ``x`` (N, C, H, W) with ``weight`` (C, 1, K, K) plus ``bias`` (C,)."""
        raise NotImplementedError

    def input_grad(self, grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The gradient of the input, from the output gradient (N, C, H, W).

        "Same" padding with an odd kernel is its own adjoint up to flipping the kernel in both
        directions, so every backend's forward computes it; a backend overrides this only to
        run another method.
        """
        return self.forward(grad_out, weight.flip((2, 3)), None)

    def weight_grad(self, x: torch.Tensor, grad_out: torch.Tensor,
                    kernel_size: int) -> torch.Tensor:
        """The gradient of the weight (C, 1, K, K), in any floating dtype."""
        raise NotImplementedError


def _register(name: str):
    def register(cls: type[DepthwiseBackend]) -> type[DepthwiseBackend]:
        cls.name = name
        return DWCONV_BACKENDS.register_module(name=name, module=cls)

    return register


class _PyTorchBackend(DepthwiseBackend):
    """PyTorch's own conv and its own backward (``aten.convolution_backward``) on one layout."""

    memory_format = torch.contiguous_format

    def _layout(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.contiguous(memory_format=self.memory_format)

    def _backward(self, grad_out: torch.Tensor, x: torch.Tensor, weight_shape: tuple[int, ...],
                  weight: torch.Tensor, mask: list[bool]) -> tuple[torch.Tensor | None, ...]:
        pad = weight_shape[-1] // 2
        return torch.ops.aten.convolution_backward(self._layout(grad_out), self._layout(x), weight,
                                                   None, [1, 1], [pad, pad], [1, 1], False,
                                                   [0, 0], weight_shape[0], mask)

    def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
        if device.type != 'cpu':
            return None
        if dtype in _HALF_DTYPES:
            # Measured: up to 4.5e-3 (fp16) / 3.6e-2 (bf16) relative error in the input gradient
            # (tests/test_ops/tolerances.py), outside the 1e-3 / 1e-2 bounds auto keeps.
            return "PyTorch's CPU half-precision depth-wise conv rounds intermediate results"
        n, c, h, w = shape
        if (pass_name == 'weight_grad'
                and kernel_size**2 * h * w >= _cpu_depthwise.WGRAD_AS_CONV_MIN_WORK):
            # Measured: 29 s for (4, 384, 32, 32), K = 31, where the CPU path takes 0.3 s; one
            # measuring run would cost more than every later step could save.
            return "PyTorch's CPU weight gradient is 4-90x slower than the cpu path at this size"
        return None

    def forward(self, x, weight, bias):
        return F.conv2d(self._layout(x), weight, bias, padding=weight.shape[-1] // 2,
                        groups=weight.shape[0])

    def input_grad(self, grad_out, weight):
        # The input only lends its shape to the input gradient; the output gradient has it.
        return self._backward(grad_out, grad_out, tuple(weight.shape), weight,
                              [True, False, False])[0]

    def weight_grad(self, x, grad_out, kernel_size):
        weight_shape = (x.shape[1], 1, kernel_size, kernel_size)
        return self._backward(grad_out, x, weight_shape, x.new_empty(weight_shape),
                              [False, True, False])[1]


@_register('nchw')
class NCHWBackend(_PyTorchBackend):
    """PyTorch on contiguous (NCHW) tensors: its native depth-wise kernel on CUDA for
    fp32/bf16, oneDNN on CPU. The path of the authors' released code."""


@_register('channels_last')
class ChannelsLastBackend(_PyTorchBackend):
    """PyTorch on ``channels_last`` tensors: cuDNN on CUDA, oneDNN's direct kernel on CPU."""

    memory_format = torch.channels_last

    def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
        if device.type == 'cuda' and dtype == torch.bfloat16:
            # Measured on an H100 (cuDNN 9.19): auto on this path failed the 1e-2 bf16 bound at
            # K = 13 (test_cuda_paths_match_conv2d[auto-13-bf16]).
            return "cuDNN's bf16 depth-wise conv misses the 1e-2 accuracy bound"
        return super().auto_skip(pass_name, device, dtype, kernel_size, shape)


@_register('cpu')
class CPUBackend(DepthwiseBackend):
    """Our CPU path (:mod:`mmreplk.ops._cpu_depthwise`): oneDNN's fast kernels for forward and
    input gradient, the weight gradient as a per-plane conv, fp16/bf16 computed in fp32. It runs
    on any device when forced; ``auto`` measures it on the CPU only."""

    def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
        return None if device.type == 'cpu' else 'the cpu path is measured on CPUs only'

    def forward(self, x, weight, bias):
        return _cpu_depthwise.conv_forward(x, weight, bias)

    def weight_grad(self, x, grad_out, kernel_size):
        return _cpu_depthwise.weight_grad(x, grad_out, kernel_size)


class TritonKernelBackend(DepthwiseBackend):
    """Base of the backends running mmreplk's Triton kernels (:mod:`mmreplk.ops.triton`): CUDA
    tensors (or CPU tensors under Triton's interpreter, ``TRITON_INTERPRET=1``, for tests) in
    fp32, fp16 or bf16. The kernel modules import Triton, so they are imported on first use."""

    def unsupported(self, pass_name, device, dtype, kernel_size, shape):
        if not triton_available():
            return 'needs the triton package: pip install triton (CUDA builds of torch ship it)'
        from .triton.launch import interpreting
        if device.type != 'cuda' and not interpreting():
            return (f'the Triton kernels need a CUDA tensor, got one on {device} (or '
                    'TRITON_INTERPRET=1 set before triton is imported, for tests only)')
        if dtype not in _TRITON_DTYPES:
            return f'the Triton kernels run fp32, fp16 and bf16, got {dtype}'
        if kernel_size % 2 == 0 or min(shape) <= 0:
            return f'the Triton kernels need an odd K and a non-empty input, got K={kernel_size}'
        if shape[1] > MAX_GRID_CHANNELS:
            return f'the Triton kernels take at most {MAX_GRID_CHANNELS} channels (CUDA grid)'
        return None

    def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
        if kernel_size < TRITON_MIN_KERNEL:
            # Measured on an H100 (24 layers, (64, 384, 32, 32), fp32 forward): at K = 7 our
            # first kernel took 29.8 ms against 19.7 (nchw) and 13.3 (cuDNN); smaller kernels
            # are memory-bound, where PyTorch's paths already run at bandwidth.
            return f'Triton is not measured below K = {TRITON_MIN_KERNEL}'
        return None


@_register('triton')
class TritonBandedIEEEBackend(TritonKernelBackend):
    """The first Triton kernel (:mod:`mmreplk.ops.triton.banded_ieee`): banded products in
    16-column slices, fp32 always fp32-accurate on CUDA-core FMAs, fp16/bf16 on tensor cores.
    Forced by name only."""

    def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
        # Measured on an H100: 5x slower than nchw at every cell of the paper's Table 1 (K = 31,
        # R = 16 to 64, forward and forward + backward), and 24 of the 58 first-use compiles of
        # a RepLKNet-31B train step.
        return 'the first Triton kernel was 5x slower than nchw at every Table-1 cell (H100)'

    def forward(self, x, weight, bias):
        from .triton import banded_ieee
        return banded_ieee.forward(x, weight, bias)

    def weight_grad(self, x, grad_out, kernel_size):
        from .triton import banded_ieee
        return banded_ieee.weight_grad(x, grad_out, kernel_size)


@_register('triton_banded')
class TritonBandedBackend(TritonKernelBackend):
    """Banded implicit GEMM on tensor cores (:mod:`mmreplk.ops.triton.banded`), any map size;
    the tensor-core weight gradient (:mod:`mmreplk.ops.triton.weight_grad`)."""

    def forward(self, x, weight, bias):
        from .triton import banded
        return banded.forward(x, weight, bias)

    def weight_grad(self, x, grad_out, kernel_size):
        from .triton import weight_grad
        return weight_grad.weight_grad(x, grad_out, kernel_size)


@_register('triton_toeplitz')
class TritonToeplitzBackend(TritonKernelBackend):
    """Dense Toeplitz GEMM per channel on tensor cores (:mod:`mmreplk.ops.triton.toeplitz`), for
    maps of at most 1024 pixels, where every tap counts. Its weight gradient is the one of
    ``triton_banded``, which ``auto`` measures instead."""

    def unsupported(self, pass_name, device, dtype, kernel_size, shape):
        why = super().unsupported(pass_name, device, dtype, kernel_size, shape)
        if why is None and shape[2] * shape[3] > TOEPLITZ_MAX_PIXELS:
            why = (f'triton_toeplitz covers maps of at most {TOEPLITZ_MAX_PIXELS} pixels, got '
                   f'{shape[2]} x {shape[3]}')
        return why

    def auto_skip(self, pass_name, device, dtype, kernel_size, shape):
        if pass_name == 'weight_grad':
            return 'its weight gradient is the kernel of triton_banded'
        return super().auto_skip(pass_name, device, dtype, kernel_size, shape)

    def forward(self, x, weight, bias):
        from .triton import toeplitz
        return toeplitz.forward(x, weight, bias)

    def weight_grad(self, x, grad_out, kernel_size):
        from .triton import weight_grad
        return weight_grad.weight_grad(x, grad_out, kernel_size)

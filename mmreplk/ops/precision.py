"""The two facts of a call that change which kernel code runs: fp32 precision and width alignment.

Both the dispatcher's bucket and the Triton launchers ask these questions; they are answered here,
once, so a bucket never holds two compiled variants of a kernel.
"""
from __future__ import annotations

import torch

#: Widths divisible by this get the kernels' aligned (16-byte load) variant.
WIDTH_ALIGNMENT = 8


def fp32_convs_use_tf32() -> bool:
    """Whether fp32 convs may run on TF32 tensor cores, as PyTorch's own cuDNN convs do.

    Reads ``torch.backends.cudnn.conv.fp32_precision`` (torch >= 2.9), which resolves 'none'
    through the cuDNN and global settings. The legacy ``torch.backends.cudnn.allow_tf32`` is
    read only where the newer setting is absent: it raises once a user sets the conv and RNN
    precisions apart with the newer API.

    Returns:
        bool: True for 'tf32', False for 'ieee' (fp32-accurate).
    """
    conv = getattr(torch.backends.cudnn, 'conv', None)
    precision = getattr(conv, 'fp32_precision', None)
    if precision is not None:
        return precision == 'tf32'
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        return False


def width_alignment(width: int) -> int:
    """The alignment the kernels are compiled for at this width: 8 when it divides W, else 1.

    Args:
        width (int): W of the input.

    Returns:
        int: :data:`WIDTH_ALIGNMENT` or 1.
    """
    return WIDTH_ALIGNMENT if width % WIDTH_ALIGNMENT == 0 else 1

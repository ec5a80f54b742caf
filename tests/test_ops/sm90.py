"""Compiles mmreplk's Triton kernels for an H100 (sm_90) on any machine, GPU or not.

Triton ships ptxas, so the whole pipeline down to a cubin runs without a device; ptxas's verbose
report (``-v``, printed when ``triton.knobs.nvidia.dump_ptxas_log`` is set) gives the register
spills, the PTX which units the dots use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import re

H100 = ('cuda', 90, 32)


@dataclasses.dataclass
class Compiled:
    """One sm_90 compile: its PTX and the bytes ptxas spilled (stores + loads)."""
    ptx: str
    spill_bytes: int

    def counts(self) -> dict[str, int]:
        """Dot instructions in the PTX: 'fma' (fp32 CUDA-core), 'mma' (mma.sync), 'wgmma'."""
        return dict(fma=len(re.findall(r'\bfma\.rn\.f32\b', self.ptx)),
                    mma=len(re.findall(r'\bmma\.sync\b', self.ptx)),
                    wgmma=len(re.findall(r'\bwgmma\.mma_async\b', self.ptx)))


def compile_sm90(fn, dtype: str, constants: dict, num_warps: int, num_stages: int) -> Compiled:
    """Compiles kernel ``fn`` as a launch on 16-byte aligned ``dtype`` tensors would.

    Args:
        fn: The ``triton.jit`` function.
        dtype (str): Triton's name of the operands' dtype ('fp32', 'fp16', 'bf16').
        constants (dict): Every constexpr of the kernel.
        num_warps (int): Warps per program.
        num_stages (int): Software pipeline stages.

    Returns:
        Compiled: The PTX and the spills ptxas reported.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, aligned = {}, {}
    for index, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = 'constexpr'
        elif name.endswith('_ptr'):
            # Partial sums are fp32 whatever the operands.
            signature[name] = '*fp32' if name == 'part_ptr' else f'*{dtype}'
            aligned[(index, )] = [['tt.divisibility', 16]]
        else:
            signature[name] = 'i32'
    log = io.StringIO()
    # ptxas runs (and reports) only on a compile Triton's cache does not answer.
    with contextlib.redirect_stdout(log), triton.knobs.nvidia.scope(), \
            triton.knobs.compilation.scope():
        triton.knobs.nvidia.dump_ptxas_log = True
        triton.knobs.compilation.always_compile = True
        compiled = triton.compile(ASTSource(fn, signature, constants, aligned),
                                  target=GPUTarget(*H100),
                                  options=dict(num_warps=num_warps, num_stages=num_stages))
    assert compiled.asm['cubin'], 'no cubin produced'
    spills = re.findall(r'(\d+) bytes spill stores, (\d+) bytes spill loads', log.getvalue())
    return Compiled(compiled.asm['ptx'], sum(int(a) + int(b) for a, b in spills))

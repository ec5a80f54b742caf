"""Worker for test_triton_interpreter.py: runs the Triton kernels under TRITON_INTERPRET=1.

Run in a subprocess so the interpreter setting (read when the kernels are decorated) never leaks
into the test process. Reads a JSON list of cases from argv[1], prints one JSON object mapping
each case name to its errors relative to a float64 ``F.conv2d`` reference.
"""
import itertools
import json
import os
import sys

if os.environ.get('TRITON_INTERPRET') != '1':
    sys.exit('run with TRITON_INTERPRET=1 (set before triton is imported)')

import torch  # noqa: E402

from mmreplk.ops import depthwise_conv2d  # noqa: E402
from mmreplk.ops.triton import banded_ieee  # noqa: E402
from mmreplk.ops.triton.launch import interpreting  # noqa: E402
from tc_reference import random_inputs, reference  # noqa: E402

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).abs().max() / expected.abs().max()).item()


def run_case(case: dict) -> dict:
    """Errors of the forward and all gradients: through the autograd op with ``impl`` (default
    'triton'), or (``all_configs``) of the raw kernels under every tile configuration the GPU
    autotuner may pick."""
    dtype = DTYPES[case['dtype']]
    x, weight, bias, grad_out = random_inputs(case, dtype)
    n, c, h, w, k = case['shape']

    ref_grads = reference(x, weight, grad_out)
    if bias is not None:
        ref_grads['out'] = ref_grads['out'] + bias.double().view(1, c, 1, 1)
        ref_grads['grad_b'] = grad_out.double().sum((0, 2, 3))

    errors = {}
    if case.get('all_configs'):
        flipped = weight.flip((2, 3))
        forwards = [tiles for tiles, _, _ in banded_ieee.FORWARD.candidates]
        wgrads = [tiles for tiles, _, _ in banded_ieee.WEIGHT_GRAD.candidates]
        for fwd, wgrad in itertools.zip_longest(forwards, wgrads):
            fwd, wgrad = fwd or forwards[0], wgrad or wgrads[0]
            tag = (f'fwd{fwd["BLOCK_H"]}x{fwd["BLOCK_W"]}/'
                   f'wgrad{wgrad["BLOCK_H"]}x{wgrad["BLOCK_W"]}')
            outputs = dict(out=banded_ieee.forward(x, weight, bias, config=fwd),
                           grad_x=banded_ieee.forward(grad_out, flipped, None, config=fwd),
                           grad_w=banded_ieee.weight_grad(x, grad_out, k, config=wgrad))
            for name, value in outputs.items():
                errors[f'{name}@{tag}'] = relative_error(value, ref_grads[name])
        return errors

    leaves = [t.clone().requires_grad_() for t in (x, weight)]
    leaf_bias = bias.clone().requires_grad_() if bias is not None else None
    out = depthwise_conv2d(*leaves, leaf_bias, impl=case.get('impl', 'triton'))
    out.backward(grad_out)
    outputs = dict(out=out, grad_x=leaves[0].grad, grad_w=leaves[1].grad)
    if leaf_bias is not None:
        outputs['grad_b'] = leaf_bias.grad
    for name, value in outputs.items():
        assert value.dtype == dtype and value.shape == ref_grads[name].shape, (name, value.dtype)
        errors[name] = relative_error(value, ref_grads[name])
    return errors


if __name__ == '__main__':
    assert interpreting(), 'the kernels were not built for the interpreter'
    cases = json.loads(sys.argv[1])
    print(json.dumps({case['name']: run_case(case) for case in cases}))

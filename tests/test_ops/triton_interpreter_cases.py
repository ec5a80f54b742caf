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

from mmreplk.ops import _triton_depthwise as kernels  # noqa: E402
from mmreplk.ops import depthwise_conv2d  # noqa: E402
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
        flipped = weight.flip((2, 3)).contiguous()
        for fwd, wgrad in itertools.zip_longest(kernels._FWD_SHAPES, kernels._WGRAD_SHAPES):
            fwd, wgrad = fwd or kernels._FWD_SHAPES[0], wgrad or kernels._WGRAD_SHAPES[0]
            fwd_config = dict(BLOCK_H=fwd[0], BLOCK_W=fwd[1])
            wgrad_config = dict(BLOCK_H=wgrad[0], BLOCK_W=wgrad[1])
            tag = f'fwd{fwd[0]}x{fwd[1]}/wgrad{wgrad[0]}x{wgrad[1]}'
            outputs = dict(out=kernels.conv_forward(x, weight, bias, config=fwd_config),
                           grad_x=kernels.conv_forward(grad_out, flipped, None, config=fwd_config),
                           grad_w=kernels.conv_weight_grad(x, grad_out, k, config=wgrad_config))
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
    assert kernels.interpreting(), 'the kernels were not built for the interpreter'
    cases = json.loads(sys.argv[1])
    print(json.dumps({case['name']: run_case(case) for case in cases}))

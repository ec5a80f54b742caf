"""Worker for test_triton_tc_interpreter.py: the tensor-core backends under TRITON_INTERPRET=1.

Run in a subprocess so the interpreter setting (read when the kernels are decorated) never leaks
into the test process. Reads a JSON list of cases from argv[1] and prints one JSON object mapping
each case name to, per pass ('out', 'grad_x', 'grad_w'), its errors against a float64
``F.conv2d`` (see tc_reference.py).
"""
import json
import os
import sys

if os.environ.get('TRITON_INTERPRET') != '1':
    sys.exit('run with TRITON_INTERPRET=1 (set before triton is imported)')

import torch  # noqa: E402

from mmreplk.ops import DWCONV_BACKENDS  # noqa: E402
from mmreplk.ops.triton import banded, toeplitz, weight_grad  # noqa: E402
from mmreplk.ops.triton.launch import interpreting  # noqa: E402

from tc_reference import errors, random_inputs, reference  # noqa: E402

DTYPES = {'fp32': torch.float32, 'tf32': torch.float32, 'fp16': torch.float16,
          'bf16': torch.bfloat16}
FORWARDS = {'triton_banded': banded, 'triton_toeplitz': toeplitz}


def run_passes(backend, x, weight, bias, grad_out, configs):
    """The three passes of a backend, or (``configs``) of its kernels with pinned tiles and the
    weight gradient's rows split three ways."""
    k = weight.shape[-1]
    if configs is None:
        out = backend.forward(x, weight, bias)
        return dict(out=out, grad_x=backend.input_grad(grad_out, weight),
                    grad_w=backend.weight_grad(x, grad_out, k))
    forward = FORWARDS[backend.name].forward
    flipped = weight.flip((2, 3))
    return dict(out=forward(x, weight, bias, config=configs['fwd']),
                grad_x=forward(grad_out, flipped, None, config=configs['fwd']),
                grad_w=weight_grad.weight_grad(x, grad_out, k, config=configs['wgrad'],
                                               num_splits=3))


def pinned_configs(backend_name: str) -> list[dict]:
    """Every autotune candidate of the backend's forward, paired with the weight gradient's."""
    fwd = [tiles for tiles, _, _ in FORWARDS[backend_name].FORWARD.candidates]
    wgrad = [tiles for tiles, _, _ in weight_grad.WEIGHT_GRAD.candidates]
    return [dict(fwd=f, wgrad=wgrad[index % len(wgrad)]) for index, f in enumerate(fwd)]


def run_case(case: dict) -> dict:
    torch.backends.cudnn.allow_tf32 = case['dtype'] == 'tf32'
    dtype = DTYPES[case['dtype']]
    x, weight, bias, grad_out = random_inputs(case, dtype)
    n, c, h, w, k = case['shape']
    ref = reference(x, weight, grad_out)
    if bias is not None:
        ref['out'] += bias.double().view(1, c, 1, 1)
    magnitude = reference(x.abs(), weight.abs(), grad_out.abs())
    backend = DWCONV_BACKENDS.get(case['family'])()
    assert backend.unsupported('forward', x.device, dtype, k, (n, c, h, w)) is None, case

    result = {}
    pinned = pinned_configs(backend.name) if case.get('all_configs') else [None]
    for index, configs in enumerate(pinned):
        outputs = run_passes(backend, x, weight, bias, grad_out, configs)
        for name, value in outputs.items():
            expected_dtype = torch.float32 if name == 'grad_w' else dtype
            assert value.dtype == expected_dtype and value.shape == ref[name].shape, (
                name, value.dtype, value.shape)
            assert value.is_contiguous(), name
            result[name if configs is None else f'{name}@config{index}'] = errors(
                value, ref[name], magnitude[name])
    return result


if __name__ == '__main__':
    assert interpreting(), 'the kernels were not built for the interpreter'
    cases = json.loads(sys.argv[1])
    print(json.dumps({case['name']: run_case(case) for case in cases}))

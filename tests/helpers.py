"""Shared test helpers."""
import socket

import torch

TINY_ARCH = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1], channels=[8, 16, 24, 32],
                 small_kernel=5, dw_ratio=1, ffn_ratio=2)


def randomize_bn_stats(model: torch.nn.Module) -> None:
    """Gives every BN non-trivial statistics and affine parameters, so folding is really tested."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            if module.affine:
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.5, 0.5)


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-4) -> None:
    """max |actual - expected| <= rel * max |expected| (the project's re-param criterion)."""
    diff = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert diff <= rel * scale, f'max abs diff {diff:.3e} > {rel} x max abs output {scale:.3e}'


def load_tool(relative_path: str):
    """Imports a script under tools/ as a module, so tests can call its ``main(argv)``."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parents[1] / 'tools' / relative_path
    spec = importlib.util.spec_from_file_location(f'tool_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]

"""The one timing harness of the package: every benchmark and the depth-wise conv dispatcher's
measurements read the clock through :func:`time_round_robin`."""
from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch


def synchronize(device: str | torch.device) -> None:
    """Waits for the work queued on ``device`` (a no-op on the CPU, which runs synchronously).

    Args:
        device (str | torch.device): The device whose queue to drain.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_round_robin(forms: Mapping[str, Callable[[], object]], device: str | torch.device,
                     warmup: int = 2, runs: int = 5) -> dict[str, list[float]]:
    """Times callables in interleaved rounds after ``warmup`` untimed rounds.

    Interleaving makes a load change on a shared machine hit every form alike.

    Args:
        forms (Mapping[str, Callable[[], object]]): Name -> work to time.
        device (str | torch.device): Device to synchronize before reading the clock.
        warmup (int): Untimed rounds. Defaults to 2.
        runs (int): Timed rounds. Defaults to 5.

    Returns:
        dict[str, list[float]]: Seconds of each timed run per form.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f'need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}')
    for _ in range(warmup):
        for work in forms.values():
            work()
    seconds: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(runs):
        for name, work in forms.items():
            synchronize(device)
            start = time.perf_counter()
            work()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def device_name(device: str | torch.device) -> str:
    """Human-readable name of the device a measurement ran on (CPU model and threads).

    Args:
        device (str | torch.device): The device.

    Returns:
        str: E.g. 'NVIDIA H100 80GB HBM3' or 'AMD EPYC 7B13 CPU (AVX2), 2 threads'.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.exists():
        models = [line.split(':', 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith('model name')]
        cpu = models[0] if models else cpu
    return f'{cpu} CPU ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads'

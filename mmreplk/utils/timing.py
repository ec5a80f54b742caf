"""The one timing harness of the package: every benchmark and the depth-wise conv dispatcher's
measurements read the clock here.

A measurement is :func:`time_call` (one run of some work) or :func:`time_round_robin` (several
forms interleaved). Without an injected clock, CUDA work is timed with CUDA events on the
current stream (the GPU's own clock: the host's launch overhead and Python's time are left out)
and CPU work with :func:`time.perf_counter`. Tests inject a :data:`Clock` (any callable returning
seconds) so that what is "slow" is decided by the test, not by a loaded machine.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

#: A clock: seconds since any fixed point.
Clock = Callable[[], float]


def now() -> float:
    """The host's monotonic clock in seconds (for durations on the host, e.g. measuring cost)."""
    return time.perf_counter()


def synchronize(device: str | torch.device) -> None:
    """Waits for the work queued on ``device`` (a no-op on the CPU, which runs synchronously).

    Args:
        device (str | torch.device): The device whose queue to drain.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(work: Callable[[], object], device: str | torch.device,
              clock: Clock | None = None) -> float:
    """Seconds one call of ``work`` takes on ``device``; its queued work has finished on return.

    The device is drained before the call, so earlier work is not counted, and after it, so an
    asynchronous error (e.g. a CUDA illegal address) is raised here, in the call that caused it.

    Args:
        work (Callable[[], object]): The work to time.
        device (str | torch.device): Device the work runs on.
        clock (Clock, optional): Clock to read before and after. Defaults to CUDA events on
            a CUDA device and :func:`now` elsewhere.

    Returns:
        float: Seconds.
    """
    device = torch.device(device)
    synchronize(device)
    if clock is None and device.type == 'cuda':
        with torch.cuda.device(device):
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            work()
            end.record()
        end.synchronize()
        synchronize(device)  # work on other streams of the device, too
        return start.elapsed_time(end) / 1e3
    clock = clock or now
    begin = clock()
    work()
    synchronize(device)
    return clock() - begin


def time_round_robin(forms: Mapping[str, Callable[[], object]], device: str | torch.device,
                     warmup: int = 2, runs: int = 5,
                     clock: Clock | None = None) -> dict[str, list[float]]:
    """Times callables in interleaved rounds after ``warmup`` untimed rounds.

    Interleaving makes a load change on a shared machine hit every form alike.

    Args:
        forms (Mapping[str, Callable[[], object]]): Name -> work to time.
        device (str | torch.device): Device the work runs on.
        warmup (int): Untimed rounds. Defaults to 2.
        runs (int): Timed rounds. Defaults to 5.
        clock (Clock, optional): See :func:`time_call`. Defaults to None.

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
            seconds[name].append(time_call(work, device, clock))
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

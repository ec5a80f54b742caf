"""``impl='auto'``: each pass of a depth-wise conv runs on the backend measured fastest for it.

Like ``torch.backends.cudnn.benchmark``, the first use of a *bucket* times every backend that can
run the pass (:mod:`mmreplk.ops.backends`) on the real tensors and keeps the fastest; later uses
of the bucket run the choice without measuring. The forward, the input gradient and the weight
gradient are chosen separately: the fastest forward is often not the fastest weight gradient.

A bucket is (device, dtype, TF32 switch, pass, K, C, and N, H, W rounded up to powers of two):
evaluating images of many sizes (ADE20K's whole-image test, multi-scale TTA) measures once per
bucket, not per image. PyTorch's own paths (``nchw``, ``channels_last``) are always among the
candidates, so ``auto`` is never slower than the best of them by construction, whatever kernels
are registered. Choices live in the dispatcher (one per process by default) and, where
``MMREPLK_DWCONV_CACHE`` names a JSON file, also on disk across processes.

No measuring happens where timing could change results between runs or cannot work: in
deterministic mode (``torch.use_deterministic_algorithms``, set by mmengine's
``randomness=dict(deterministic=True)``, so a resumed run takes the same paths as the first),
and while a CUDA graph is being captured. There ``auto`` runs the first backend of
:data:`FIXED_ORDER` that can run the pass: the CPU path on CPUs, PyTorch's native kernel on GPUs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from mmengine.logging import MMLogger

from mmreplk.utils.timing import synchronize, time_round_robin
from .backends import DWCONV_BACKENDS, PASSES, DepthwiseBackend, Shape
from .precision import fp32_convs_use_tf32

#: Environment variable naming a JSON file where choices persist across processes.
CACHE_ENV = 'MMREPLK_DWCONV_CACHE'

#: What ``auto`` runs where it does not measure: the first backend that can run the pass.
FIXED_ORDER = {'cpu': ('cpu', 'nchw'), 'cuda': ('nchw', )}

#: Signature of a measuring function: the bucket measured, its candidates (name -> one run) and
#: the device to synchronize -> seconds per run, or the exception a candidate raised.
Measure = Callable[['Bucket', Mapping[str, Callable[[], object]], torch.device],
                   dict[str, float | BaseException]]


def _bucket_size(size: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(size, 1))))


def device_key(device: torch.device) -> str:
    """What identifies a device's speed: its model (GPUs) or its thread count (CPUs)."""
    if device.type == 'cuda':
        return f'cuda:{torch.cuda.get_device_name(device)}'
    if device.type == 'cpu':
        return f'cpu:{torch.get_num_threads()}threads'
    return device.type


@dataclasses.dataclass(frozen=True)
class Bucket:
    """The key under which a choice is kept.

    Args:
        device (str): :func:`device_key` of the device.
        dtype (str): Dtype name, e.g. 'float32'.
        tf32 (bool): ``torch.backends.cudnn.allow_tf32`` for CUDA fp32, else False.
        pass_name (str): One of :data:`~mmreplk.ops.backends.PASSES`.
        kernel_size (int): K.
        channels (int): C.
        batch (int): N rounded up to a power of two.
        height (int): H rounded up to a power of two.
        width (int): W rounded up to a power of two.
    """
    device: str
    dtype: str
    tf32: bool
    pass_name: str
    kernel_size: int
    channels: int
    batch: int
    height: int
    width: int

    @classmethod
    def of(cls, pass_name: str, device: torch.device, dtype: torch.dtype, kernel_size: int,
           shape: Shape) -> 'Bucket':
        """The bucket of one call."""
        n, c, h, w = shape
        tf32 = device.type == 'cuda' and dtype == torch.float32 and fp32_convs_use_tf32()
        return cls(device_key(device), str(dtype).removeprefix('torch.'), tf32, pass_name,
                   kernel_size, c, _bucket_size(n), _bucket_size(h), _bucket_size(w))

    def __str__(self) -> str:
        precision = f'{self.dtype}{"+tf32" if self.tf32 else ""}'
        return (f'{self.device} {precision} {self.pass_name} K={self.kernel_size} '
                f'C={self.channels} N<={self.batch} H<={self.height} W<={self.width}')


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ``auto`` runs for a bucket, and why.

    Args:
        impl (str): The backend chosen.
        seconds (dict[str, float]): Measured seconds per run of each candidate timed.
        skipped (dict[str, str]): Candidates not timed or that failed, and why.
    """
    impl: str
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """One line: the choice, then every candidate's time or reason."""
        times = ', '.join(f'{name} {1e3 * s:.3g} ms'
                          for name, s in sorted(self.seconds.items(), key=lambda kv: kv[1]))
        skipped = ''.join(f'; {name} skipped: {why}' for name, why in self.skipped.items())
        return f'{self.impl} ({times or "not measured"}{skipped})'


def measure_candidates(candidates: Mapping[str, Callable[[], object]], device: torch.device,
                       runs: int = 3, prune_factor: float = 3.0) -> dict[str, float | BaseException]:
    """Seconds per run of each candidate, or the exception it raised.

    Each candidate runs once untimed (compilation, autotuning, caches), then once timed; those
    slower than ``prune_factor`` x the fastest keep that single time, and the rest are timed
    ``runs`` more times round-robin (median), so a path 10x slower costs two runs, not five.

    Args:
        candidates (Mapping[str, Callable[[], object]]): Name -> one run of the pass.
        device (torch.device): Device to synchronize before reading the clock.
        runs (int): Timed round-robin runs of the contenders. Defaults to 3.
        prune_factor (float): Contenders are within this factor of the fastest single run.
            Defaults to 3.0.

    Returns:
        dict[str, float | BaseException]: Per candidate.
    """
    results: dict[str, float | BaseException] = {}
    single: dict[str, float] = {}
    for name, run in candidates.items():
        try:
            run()
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            single[name] = time.perf_counter() - start
        except Exception as error:  # a candidate that fails is skipped, and reported
            results[name] = error
    if not single:
        return results
    fastest = min(single.values())
    contenders = {name: candidates[name] for name, s in single.items()
                  if s <= prune_factor * fastest}
    results.update({name: s for name, s in single.items() if name not in contenders})
    if len(contenders) > 1:
        seconds = time_round_robin(contenders, device, warmup=0, runs=runs)
        results.update({name: statistics.median(s) for name, s in seconds.items()})
    else:
        results.update({name: single[name] for name in contenders})
    return results


class DepthwiseDispatcher:
    """Runs each pass of a depth-wise conv on a forced backend or on the one measured fastest.

    Args:
        backends (Sequence[str | DepthwiseBackend], optional): Backends ``auto`` may choose
            from, in order of preference on ties: registered names or backend objects (which
            ``impl`` then also accepts by their ``name``). Defaults to every registered backend.
        measure (Measure, optional): The measuring function; tests inject timings here.
            Defaults to :func:`measure_candidates`.
        cache_file (str, optional): JSON file to read choices from and add them to. Defaults
            to the ``MMREPLK_DWCONV_CACHE`` environment variable, or none.
    """

    def __init__(self,
                 backends: Sequence[str | DepthwiseBackend] | None = None,
                 measure: Measure | None = None,
                 cache_file: str | os.PathLike | None = None) -> None:
        backends = tuple(DWCONV_BACKENDS.module_dict) if backends is None else tuple(backends)
        unknown = [b for b in backends if isinstance(b, str) and DWCONV_BACKENDS.get(b) is None]
        if unknown:
            raise ValueError(f'unknown depth-wise conv backends {unknown}; registered: '
                             f'{list(DWCONV_BACKENDS.module_dict)}')
        # get(), not build(): a backend is no config, and build() warns under another scope.
        built = [DWCONV_BACKENDS.get(b)() if isinstance(b, str) else b for b in backends]
        self._backends = {backend.name: backend for backend in built}
        self._measure = measure or (lambda bucket, candidates, device:
                                    measure_candidates(candidates, device))
        cache_file = cache_file if cache_file is not None else os.environ.get(CACHE_ENV)
        self.cache_file = os.fspath(cache_file) if cache_file else None
        self.choices: dict[Bucket, Choice] = {}
        #: Buckets measured by this dispatcher (the cost of a first use).
        self.measurements = 0
        self._disk_choices: dict[str, str] | None = None

    # -- which backend -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Names of the backends this dispatcher runs."""
        return tuple(self._backends)

    def backend(self, impl: str) -> DepthwiseBackend:
        """The backend registered as ``impl``."""
        if impl not in self._backends:
            raise ValueError(f'unknown depth-wise conv impl {impl!r}; choose from '
                             f'{("auto", ) + tuple(self._backends)}')
        return self._backends[impl]

    def resolve(self, pass_name: str, impl: str, device: torch.device, dtype: torch.dtype,
                kernel_size: int, shape: Shape,
                run_args: Callable[[str], Callable[[], object]] | None = None) -> str:
        """The backend a pass runs on.

        Args:
            pass_name (str): One of :data:`PASSES`.
            impl (str): 'auto' or a backend name.
            device (torch.device): Device of the tensors.
            dtype (torch.dtype): Their dtype.
            kernel_size (int): K.
            shape (Shape): Input shape (N, C, H, W).
            run_args (Callable[[str], Callable[[], object]], optional): Backend name -> one run
                of the pass on the real tensors, for measuring; None never measures (the
                choice of a bucket measured before, or the fixed order). Defaults to None.

        Returns:
            str: The backend name.
        """
        if pass_name not in PASSES:
            raise ValueError(f'unknown pass {pass_name!r}; choose from {PASSES}')
        if impl != 'auto':
            why = self.backend(impl).unsupported(pass_name, device, dtype, kernel_size, shape)
            if why is not None:
                raise RuntimeError(f'depth-wise conv impl={impl!r} cannot run the {pass_name} '
                                   f'of a {tuple(shape)} {dtype} input with K={kernel_size} '
                                   f"on {device}: {why}. Use impl='auto'.")
            return impl
        bucket = Bucket.of(pass_name, device, dtype, kernel_size, shape)
        choice = self.choices.get(bucket) or self._from_disk(bucket, device, dtype, shape)
        if choice is not None:
            return choice.impl
        candidates, skipped = self.candidates(pass_name, device, dtype, kernel_size, shape)
        if len(candidates) == 1:
            self.choices[bucket] = Choice(candidates[0], skipped=skipped)
            return candidates[0]
        if run_args is None or not self.may_measure(device):
            return next((name for name in FIXED_ORDER.get(device.type, ('nchw', ))
                         if name in candidates), candidates[0])
        return self._measure_bucket(bucket, candidates, skipped, run_args, device).impl

    def candidates(self, pass_name: str, device: torch.device, dtype: torch.dtype,
                   kernel_size: int, shape: Shape) -> tuple[list[str], dict[str, str]]:
        """Backends ``auto`` considers for a pass, and those it skips though they could run it,
        with the reasons (backends that cannot run it are left out)."""
        candidates, skipped, unsupported = [], {}, {}
        for name, backend in self._backends.items():
            why = backend.unsupported(pass_name, device, dtype, kernel_size, shape)
            if why is not None:
                unsupported[name] = why
            elif (why := backend.auto_skip(pass_name, device, dtype, kernel_size, shape)):
                skipped[name] = why
            else:
                candidates.append(name)
        if not candidates:
            raise RuntimeError(f'no depth-wise conv backend can run the {pass_name} of a '
                               f'{tuple(shape)} {dtype} input with K={kernel_size} on {device}: '
                               f'{unsupported | skipped}')
        return candidates, skipped

    @staticmethod
    def may_measure(device: torch.device) -> bool:
        """Whether timing may decide here (not in deterministic mode or a CUDA graph capture)."""
        if torch.are_deterministic_algorithms_enabled():
            return False
        return not (device.type == 'cuda' and torch.cuda.is_current_stream_capturing())

    def _measure_bucket(self, bucket: Bucket, candidates: list[str], skipped: dict[str, str],
                        run_args: Callable[[str], Callable[[], object]],
                        device: torch.device) -> Choice:
        results = self._measure(bucket, {name: run_args(name) for name in candidates}, device)
        seconds = {name: r for name, r in results.items() if not isinstance(r, BaseException)}
        failed = {name: f'raised {type(r).__name__}: {r}' for name, r in results.items()
                  if isinstance(r, BaseException)}
        logger = MMLogger.get_current_instance()
        for name, why in failed.items():
            logger.warning(f'depth-wise conv backend {name} failed on {bucket} and is skipped: '
                           f'{why}')
        skipped = {**skipped, **failed}
        if not seconds:
            raise RuntimeError(f'every depth-wise conv backend failed for {bucket}: {skipped}')
        # Ties go to the earlier backend (PyTorch's own paths are registered first).
        impl = min(seconds, key=lambda name: (seconds[name], candidates.index(name)))
        choice = Choice(impl, seconds, skipped)
        self.choices[bucket] = choice
        self.measurements += 1
        logger.info(f'depth-wise conv {bucket}: {choice.summary()}')
        self._to_disk(bucket, impl)
        return choice

    # -- on disk -------------------------------------------------------------------------------
    def _load_disk(self) -> dict[str, str]:
        if self._disk_choices is None:
            self._disk_choices = {}
            if self.cache_file and os.path.exists(self.cache_file):
                try:
                    with open(self.cache_file) as file:
                        self._disk_choices = dict(json.load(file))
                except (OSError, ValueError) as error:
                    MMLogger.get_current_instance().warning(
                        f'ignoring the depth-wise conv cache {self.cache_file}: {error}')
        return self._disk_choices

    def _from_disk(self, bucket: Bucket, device: torch.device, dtype: torch.dtype,
                   shape: Shape) -> Choice | None:
        if not self.cache_file:
            return None
        impl = self._load_disk().get(str(bucket))
        if impl not in self._backends or self._backends[impl].unsupported(
                bucket.pass_name, device, dtype, bucket.kernel_size, shape):
            return None
        choice = Choice(impl)
        self.choices[bucket] = choice
        return choice

    def _to_disk(self, bucket: Bucket, impl: str) -> None:
        if not self.cache_file:
            return
        stored = self._load_disk()
        stored[str(bucket)] = impl
        folder = os.path.dirname(os.path.abspath(self.cache_file))
        os.makedirs(folder, exist_ok=True)
        # Write-then-rename: a process reading the cache never sees half a file.
        with tempfile.NamedTemporaryFile('w', dir=folder, delete=False, suffix='.tmp') as file:
            json.dump(stored, file, indent=1, sort_keys=True)
        os.replace(file.name, self.cache_file)

    # -- running -------------------------------------------------------------------------------
    def run(self, pass_name: str, impl: str, *args: torch.Tensor | int | None) -> torch.Tensor:
        """Runs a pass: ``forward(x, weight, bias)``, ``input_grad(grad_out, weight)`` or
        ``weight_grad(x, grad_out, kernel_size)``, on the backend :meth:`resolve` picks."""
        first = args[0]
        kernel_size = args[2] if pass_name == 'weight_grad' else args[1].shape[-1]

        def run_args(name: str) -> Callable[[], object]:
            method = getattr(self._backends[name], pass_name)
            return lambda: method(*args)

        name = self.resolve(pass_name, impl, first.device, first.dtype, kernel_size,
                            tuple(first.shape), run_args)
        return getattr(self._backends[name], pass_name)(*args)

    def table(self) -> str:
        """The choices made so far, one markdown row per bucket."""
        lines = ['| bucket | chose | measured (ms) / skipped |', '|---|---|---|']
        for bucket, choice in self.choices.items():
            lines.append(f'| {bucket} | {choice.impl} | {choice.summary()} |')
        return '\n'.join(lines)


_dispatcher: DepthwiseDispatcher | None = None


def get_dispatcher() -> DepthwiseDispatcher:
    """The process's dispatcher (created on first use)."""
    global _dispatcher
    if _dispatcher is None:
        _dispatcher = DepthwiseDispatcher()
    return _dispatcher


@contextlib.contextmanager
def use_dispatcher(dispatcher: DepthwiseDispatcher) -> Iterator[DepthwiseDispatcher]:
    """Runs every depth-wise conv of the block through ``dispatcher`` (tests, benchmarks).

    Args:
        dispatcher (DepthwiseDispatcher): The dispatcher to use.

    Yields:
        DepthwiseDispatcher: ``dispatcher``.
    """
    global _dispatcher
    previous = _dispatcher
    _dispatcher = dispatcher
    try:
        yield dispatcher
    finally:
        _dispatcher = previous

"""``impl='auto'``: each pass of a depth-wise conv runs on the backend measured fastest for it.

Like ``torch.backends.cudnn.benchmark``, the first use of a *bucket* times every backend that can
run the pass (:mod:`mmreplk.ops.backends`) on the real tensors and keeps the fastest; later uses
of the bucket run the choice without measuring. The forward, the input gradient and the weight
gradient are chosen separately: the fastest forward is often not the fastest weight gradient.

A bucket is (device, dtype, TF32 switch, pass, K, C, N, H, W rounded up to powers of two, and the
width alignment the kernels compile for): evaluating images of many sizes (ADE20K's whole-image
test, multi-scale TTA) measures once per bucket, not per image, and a size in a bucket measured
before compiles and tunes no new kernel variant. PyTorch's own paths (``nchw``,
``channels_last``) are always among the candidates, so ``auto`` is never slower than the best of
them, at the precision the bucket names.

Where a choice comes from, first match wins: this dispatcher's choices; the only candidate; in
deterministic mode (``torch.use_deterministic_algorithms``, set by mmengine's
``randomness=dict(deterministic=True)``) the first backend of :data:`FIXED_ORDER` that can run
the pass, with nothing measured or read from files; choices pinned by :meth:`pin` (a resumed run
takes its work dir's ``dwconv_choices.json``); the disk cache ``MMREPLK_DWCONV_CACHE``
(:mod:`mmreplk.ops.choice_file`); a measurement. While a CUDA graph is captured nothing is
measured either (the fixed order, or a choice known from the files).

**Every rank runs the same choice.** In a multi-process job the ranks agree through the process
group's key-value store: the first rank to meet a bucket decides it (files or measurement) and
publishes the choice; every other rank takes the published one. No collective is involved, so
ranks that meet buckets in different orders (images of other sizes per rank) cannot deadlock.

**Measuring never ends a run for a candidate's sake**, with one exception: a candidate that
raises is skipped (an out-of-memory candidate is skipped for the bucket and the choice is not
written to the disk cache, where memory may be free), but a CUDA error (an illegal address, say)
leaves the device unusable, so it stops the process with :class:`BackendDeviceError`, naming the
backend and how to exclude it (``MMREPLK_DWCONV_EXCLUDE``) or force another path.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import statistics
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
from mmengine.logging import MMLogger

from mmreplk.utils.errors import UserError
from mmreplk.utils.timing import Clock, now, synchronize, time_call
from .backends import DWCONV_BACKENDS, PASSES, DepthwiseBackend, Shape
from .choice_file import ChoiceCache
from .precision import fp32_convs_use_tf32, width_alignment

#: Environment variable naming a JSON file where choices persist across processes.
CACHE_ENV = 'MMREPLK_DWCONV_CACHE'

#: Environment variable with backend names (comma-separated) that ``auto`` never measures.
EXCLUDE_ENV = 'MMREPLK_DWCONV_EXCLUDE'

#: What ``auto`` runs where it does not measure: the first backend that can run the pass.
FIXED_ORDER = {'cpu': ('cpu', 'nchw'), 'cuda': ('nchw', )}

#: Signature of a measuring function: the bucket measured, its candidates (name -> one run) and
#: the device -> seconds per run, or the exception a candidate raised.
Measure = Callable[['Bucket', Mapping[str, Callable[[], object]], torch.device],
                   dict[str, float | BaseException]]

# Errors after which a device runs nothing more (sticky CUDA errors, reported asynchronously).
_DEVICE_ERROR_MARKS = ('CUDA error', 'Triton Error [CUDA]', 'CUDA kernel errors')


def _bucket_size(size: int) -> int:
    return 1 << (max(size, 1) - 1).bit_length()  # exact integer arithmetic, no float log


@functools.cache
def _cuda_model(index: int) -> str:
    # A GPU's model is fixed for the process; asking CUDA on every call is forward-path overhead.
    return torch.cuda.get_device_name(index)


def device_key(device: torch.device) -> str:
    """What identifies a device's speed: its model (GPUs) or its thread count (CPUs)."""
    if device.type == 'cuda':
        # A tensor's device always has an index; a bare 'cuda' means whichever is current.
        model = (torch.cuda.get_device_name(device) if device.index is None else
                 _cuda_model(device.index))
        return f'cuda:{model}'
    if device.type == 'cpu':
        return f'cpu:{torch.get_num_threads()}threads'
    return device.type


@dataclasses.dataclass(frozen=True)
class Bucket:
    """The key under which a choice is kept.

    Args:
        device (str): :func:`device_key` of the device.
        dtype (str): Dtype name, e.g. 'float32'.
        tf32 (bool): Whether CUDA fp32 convs may use TF32 (:func:`fp32_convs_use_tf32`); False
            for other dtypes and devices.
        pass_name (str): One of :data:`~mmreplk.ops.backends.PASSES`.
        kernel_size (int): K.
        channels (int): C.
        batch (int): N rounded up to a power of two.
        height (int): H rounded up to a power of two.
        width (int): W rounded up to a power of two.
        align (int): :func:`~mmreplk.ops.precision.width_alignment` of W, which selects a
            compiled kernel variant. Defaults to 1.
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
    align: int = 1

    @classmethod
    def of(cls, pass_name: str, device: torch.device, dtype: torch.dtype, kernel_size: int,
           shape: Shape) -> 'Bucket':
        """The bucket of one call."""
        n, c, h, w = shape
        tf32 = device.type == 'cuda' and dtype == torch.float32 and fp32_convs_use_tf32()
        return cls(device_key(device), str(dtype).removeprefix('torch.'), tf32, pass_name,
                   kernel_size, c, _bucket_size(n), _bucket_size(h), _bucket_size(w),
                   width_alignment(w))

    def __str__(self) -> str:
        precision = f'{self.dtype}{"+tf32" if self.tf32 else ""}'
        return (f'{self.device} {precision} {self.pass_name} K={self.kernel_size} '
                f'C={self.channels} N<={self.batch} H<={self.height} W<={self.width} '
                f'align={self.align}')


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ``auto`` runs for a bucket, and why.

    Args:
        impl (str): The backend chosen.
        seconds (dict[str, float]): Measured seconds per run of each candidate timed.
        skipped (dict[str, str]): Candidates not timed or that failed, and why.
        source (str): Where the choice comes from: 'measured', 'one candidate', 'from the
            cache', 'from the work dir' or 'from rank N' (another rank decided). Defaults to
            'measured'.
        cost (float): Seconds spent measuring the bucket (compilation included). Defaults to 0.
    """
    impl: str
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    source: str = 'measured'
    cost: float = 0.0

    def summary(self) -> str:
        """One line: the choice, then every candidate's time or reason."""
        times = ', '.join(f'{name} {1e3 * s:.3g} ms'
                          for name, s in sorted(self.seconds.items(), key=lambda kv: kv[1]))
        skipped = ''.join(f'; {name} skipped: {why}' for name, why in self.skipped.items())
        origin = '' if self.source == 'measured' else f'; {self.source}'
        return f'{self.impl} ({times or "not measured"}{origin}{skipped})'

    def to_record(self) -> dict:
        """The choice as JSON data (the work dir's table, the message between ranks)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping, source: str) -> 'Choice':
        """The choice :meth:`to_record` wrote, with another source."""
        return cls(record['impl'], dict(record.get('seconds', {})),
                   dict(record.get('skipped', {})), source, float(record.get('cost', 0.0)))


class BackendDeviceError(UserError, RuntimeError):
    """A backend raised a CUDA error while ``auto`` measured it: the device is unusable now.

    Args:
        backend (str): The backend that raised.
        error (BaseException): What it raised.
        where (str): The bucket, when known. Defaults to ''.
    """

    def __init__(self, backend: str, error: BaseException, where: str = '') -> None:
        self.backend, self.error = backend, error
        at = f' on {where}' if where else ''
        super().__init__(
            f'depth-wise conv backend {backend!r} raised a device error while impl=\'auto\' '
            f'measured it{at}: {type(error).__name__}: {error}. Such an error leaves the GPU '
            f'unusable for this process, so the run stops here. Exclude the backend from auto '
            f'with {EXCLUDE_ENV}={backend} (comma-separated names), or force one path with '
            f"impl='nchw' (configs: --cfg-options model.backbone.dwconv_impl=nchw).")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error is an allocation that failed: the caching allocator's
    ``torch.OutOfMemoryError``, or CUDA's own (``cudaErrorMemoryAllocation``, not sticky)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and 'out of memory' in str(error))


def is_device_error(error: BaseException) -> bool:
    """Whether an error leaves the device unusable (a sticky CUDA error), unlike an out of memory
    or a Python exception, after which other candidates can still run."""
    if is_out_of_memory(error):
        return False
    accelerator_error = getattr(torch, 'AcceleratorError', ())
    return isinstance(error, accelerator_error) or (
        isinstance(error, RuntimeError) and any(mark in str(error)
                                                for mark in _DEVICE_ERROR_MARKS))


def measure_candidates(candidates: Mapping[str, Callable[[], object]], device: torch.device,
                       runs: int = 3, prune_factor: float = 3.0,
                       clock: Clock | None = None) -> dict[str, float | BaseException]:
    """Seconds per run of each candidate, or the exception it raised.

    Each candidate runs once untimed (compilation, autotuning, caches), then once timed; those
    slower than ``prune_factor`` x the fastest keep that single time, and the rest are timed
    ``runs`` more times round-robin (median), so a path 10x slower costs two runs, not five. The
    device is synchronized around every run, so an asynchronous error is raised in the run of
    the candidate that caused it.

    Args:
        candidates (Mapping[str, Callable[[], object]]): Name -> one run of the pass.
        device (torch.device): Device the candidates run on.
        runs (int): Timed round-robin runs of the contenders. Defaults to 3.
        prune_factor (float): Contenders are within this factor of the fastest single run.
            Defaults to 3.0.
        clock (Clock, optional): See :func:`~mmreplk.utils.timing.time_call`. Defaults to None.

    Returns:
        dict[str, float | BaseException]: Per candidate.

    Raises:
        BackendDeviceError: A candidate raised a CUDA error.
    """
    results: dict[str, float | BaseException] = {}
    times: dict[str, list[float]] = {}

    def attempt(name: str, timed: bool) -> None:
        try:
            seconds = time_call(candidates[name], device, clock)
        except Exception as error:  # a candidate that fails is skipped, and reported
            if is_device_error(error):
                raise BackendDeviceError(name, error) from error
            results[name] = error
            times.pop(name, None)
            return
        if timed:
            times.setdefault(name, []).append(seconds)

    synchronize(device)  # an earlier fault is not the first candidate's
    for name in candidates:
        attempt(name, timed=False)
        if name not in results:
            attempt(name, timed=True)
    if times:
        fastest = min(seconds[0] for seconds in times.values())
        contenders = [name for name, seconds in times.items()
                      if seconds[0] <= prune_factor * fastest]
        if len(contenders) > 1:
            for _ in range(runs):
                for name in contenders:
                    if name not in results:
                        attempt(name, timed=True)
            for name in contenders:
                if name in times:
                    times[name] = times[name][1:]
    results.update({name: statistics.median(seconds) for name, seconds in times.items()})
    return results


def _rank_store() -> dist.Store | None:
    """The default process group's key-value store in a job of more than one rank, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.distributed_c10d._get_default_store()


def _backend_names(names: str | Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(names, str):
        names = names.split(',')
    return tuple(name.strip() for name in names or () if name.strip())


class DepthwiseDispatcher:
    """Runs each pass of a depth-wise conv on a forced backend or on the one measured fastest.

    Args:
        backends (Sequence[str | DepthwiseBackend], optional): Backends ``auto`` may choose
            from, in order of preference on ties: registered names or backend objects (which
            ``impl`` then also accepts by their ``name``). Defaults to every registered backend.
        measure (Measure, optional): The measuring function; tests inject timings here.
            Defaults to :func:`measure_candidates` with ``clock``.
        cache_file (str, optional): JSON file to read choices from and add them to. Defaults
            to the ``MMREPLK_DWCONV_CACHE`` environment variable, or none.
        clock (Clock, optional): The clock measurements read; tests inject one. Defaults to
            CUDA events on GPUs and the host's clock elsewhere.
        exclude (str | Sequence[str], optional): Backends ``auto`` never measures (forcing them
            by name still works). Defaults to the ``MMREPLK_DWCONV_EXCLUDE`` environment
            variable (comma-separated), or none.
    """

    def __init__(self,
                 backends: Sequence[str | DepthwiseBackend] | None = None,
                 measure: Measure | None = None,
                 cache_file: str | os.PathLike | None = None,
                 clock: Clock | None = None,
                 exclude: str | Sequence[str] | None = None) -> None:
        backends = tuple(DWCONV_BACKENDS.module_dict) if backends is None else tuple(backends)
        unknown = [b for b in backends if isinstance(b, str) and DWCONV_BACKENDS.get(b) is None]
        if unknown:
            raise ValueError(f'unknown depth-wise conv backends {unknown}; registered: '
                             f'{list(DWCONV_BACKENDS.module_dict)}')
        # get(), not build(): a backend is no config, and build() warns under another scope.
        built = [DWCONV_BACKENDS.get(b)() if isinstance(b, str) else b for b in backends]
        self._backends = {backend.name: backend for backend in built}
        self.exclude = _backend_names(os.environ.get(EXCLUDE_ENV) if exclude is None
                                      else exclude)
        unknown = [name for name in self.exclude if name not in self._backends]
        if unknown:
            raise ValueError(f'cannot exclude unknown depth-wise conv backends {unknown} '
                             f'({EXCLUDE_ENV}); choose from {list(self._backends)}')
        self._measure = measure or (lambda bucket, candidates, device:
                                    measure_candidates(candidates, device, clock=clock))
        self.cache_file = cache_file if cache_file is not None else os.environ.get(CACHE_ENV)
        self.choices: dict[Bucket, Choice] = {}
        #: Buckets measured by this dispatcher (the cost of a first use).
        self.measurements = 0
        self._pinned: dict[str, str] = {}
        #: What deterministic mode runs per bucket (the fixed order; never measured nor kept).
        self._fixed_choices: dict[Bucket, str] = {}
        self._warned_backends: set[str] = set()

    @property
    def cache_file(self) -> str | None:
        """The disk cache's path, or None (setting it starts another cache)."""
        return self.cache.path if self.cache else None

    @cache_file.setter
    def cache_file(self, path: str | os.PathLike | None) -> None:
        self.cache = ChoiceCache(path) if path else None

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
                of the pass on the real tensors, for measuring; None never measures (a choice
                known before, or the fixed order). Defaults to None.

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
        if bucket in self.choices:
            return self.choices[bucket].impl
        deterministic = torch.are_deterministic_algorithms_enabled()
        if deterministic and bucket in self._fixed_choices:
            return self._fixed_choices[bucket]
        candidates, skipped = self.candidates(pass_name, device, dtype, kernel_size, shape)
        if len(candidates) == 1:
            return self._keep(bucket, Choice(candidates[0], skipped=skipped,
                                             source='one candidate')).impl
        if deterministic:
            # Not among the choices (measuring may decide once the mode is off), but remembered:
            # asking every backend again on every call would cost more than the choice itself.
            self._fixed_choices[bucket] = self._fixed(device, candidates)
            return self._fixed_choices[bucket]
        if run_args is None or not self.may_measure(device):
            # Not kept: measuring may decide once it is allowed.
            known = self._published(bucket, candidates) or self._known(bucket, candidates)
            return known.impl if known else self._fixed(device, candidates)

        def decide() -> Choice:
            return (self._known(bucket, candidates)
                    or self._measure_bucket(bucket, candidates, skipped, run_args, device))

        return self._keep(bucket, self._shared(bucket, candidates, decide)).impl

    def candidates(self, pass_name: str, device: torch.device, dtype: torch.dtype,
                   kernel_size: int, shape: Shape) -> tuple[list[str], dict[str, str]]:
        """Backends ``auto`` considers for a pass, and those it skips though they could run it,
        with the reasons (backends that cannot run it are left out)."""
        candidates, skipped, unsupported = [], {}, {}
        # A choice serves every shape of its bucket: a backend must reach the largest one too.
        n, c, h, w = shape
        largest = (_bucket_size(n), c, _bucket_size(h), _bucket_size(w))
        for name, backend in self._backends.items():
            why = backend.unsupported(pass_name, device, dtype, kernel_size, shape)
            if why is not None:
                unsupported[name] = why
            elif name in self.exclude:
                skipped[name] = f'excluded ({EXCLUDE_ENV})'
            elif (why := backend.unsupported(pass_name, device, dtype, kernel_size, largest)):
                skipped[name] = f'cannot run every shape of this bucket: {why}'
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

    def pin(self, choices: Mapping[str, str]) -> None:
        """Makes known choices win over the cache and measuring (a resumed run's work dir table).

        A pinned backend ``auto`` would not consider for its bucket is ignored.

        Args:
            choices (Mapping[str, str]): ``str(bucket)`` -> backend name.
        """
        self._pinned.update(choices)

    def _fixed(self, device: torch.device, candidates: list[str]) -> str:
        return next((name for name in FIXED_ORDER.get(device.type, ('nchw', ))
                     if name in candidates), candidates[0])

    def _known(self, bucket: Bucket, candidates: list[str]) -> Choice | None:
        """A choice pinned or in the disk cache that ``auto`` may still make for the bucket."""
        key = str(bucket)
        for source, impl in (('from the work dir', self._pinned.get(key)),
                             ('from the cache', self.cache.get(key) if self.cache else None)):
            if impl in candidates:
                return Choice(impl, source=source)
            if impl is not None:
                MMLogger.get_current_instance().debug(
                    f'depth-wise conv {bucket}: ignoring {impl!r} {source}, which auto '
                    f'does not consider there (candidates: {candidates})')
        return None

    def _keep(self, bucket: Bucket, choice: Choice) -> Choice:
        self.choices[bucket] = choice
        MMLogger.get_current_instance().debug(f'depth-wise conv {bucket}: {choice.summary()}')
        return choice

    def _measure_bucket(self, bucket: Bucket, candidates: list[str], skipped: dict[str, str],
                        run_args: Callable[[str], Callable[[], object]],
                        device: torch.device) -> Choice:
        start = now()
        try:
            results = self._measure(bucket, {name: run_args(name) for name in candidates},
                                    device)
        except BackendDeviceError as error:
            raise BackendDeviceError(error.backend, error.error, str(bucket)) from error.error
        seconds = {name: r for name, r in results.items() if not isinstance(r, BaseException)}
        out_of_memory = [name for name, r in results.items()
                         if isinstance(r, BaseException) and is_out_of_memory(r)]
        failed = {name: f'raised {type(r).__name__}: {r}' for name, r in results.items()
                  if isinstance(r, BaseException) and name not in out_of_memory}
        logger = MMLogger.get_current_instance()
        for name, why in failed.items():
            if name not in self._warned_backends:  # once per backend; the table has the rest
                self._warned_backends.add(name)
                logger.warning(f'depth-wise conv backend {name} failed on {bucket} and is '
                               f'skipped there: {why}')
        skipped = {**skipped, **failed,
                   **{name: 'out of memory (this choice is not cached)' for name in out_of_memory}}
        if not seconds:
            raise RuntimeError(f'every depth-wise conv backend failed for {bucket}: {skipped}')
        # Ties go to the earlier backend (PyTorch's own paths are registered first).
        impl = min(seconds, key=lambda name: (seconds[name], candidates.index(name)))
        choice = Choice(impl, seconds, skipped, cost=now() - start)
        self.measurements += 1
        if self.cache and not out_of_memory:
            self.cache.put(str(bucket), impl)
        return choice

    # -- between ranks -------------------------------------------------------------------------
    @staticmethod
    def _store_key(bucket: Bucket) -> str:
        return f'mmreplk/dwconv_choice/{bucket}'

    def _shared(self, bucket: Bucket, candidates: list[str],
                decide: Callable[[], Choice]) -> Choice:
        """``decide()`` on the first rank to get here; every other rank takes its choice."""
        store = _rank_store()
        if store is None:
            return decide()
        key = self._store_key(bucket)
        if store.add(f'{key}/claimed', 1) == 1:
            try:
                choice = decide()
            except BaseException as error:
                store.set(key, json.dumps({'error': f'{type(error).__name__}: {error}'}))
                raise
            store.set(key, json.dumps({**choice.to_record(), 'rank': dist.get_rank()}))
            return choice
        store.wait([key])
        return self._published(bucket, candidates)

    def _published(self, bucket: Bucket, candidates: list[str]) -> Choice | None:
        """The choice another rank published for the bucket, or None (not yet, or no job)."""
        store = _rank_store()
        key = self._store_key(bucket)
        if store is None or not store.check([key]):
            return None
        record = json.loads(store.get(key))
        if 'error' in record:
            raise RuntimeError(f'the rank that chose the depth-wise conv path for {bucket} '
                               f'failed: {record["error"]}')
        if record['impl'] not in candidates:
            raise RuntimeError(f'rank {record["rank"]} chose depth-wise conv backend '
                               f'{record["impl"]!r} for {bucket}, which this rank cannot run '
                               f'(candidates here: {candidates}); give every rank the same '
                               f'backends and {EXCLUDE_ENV}')
        return Choice.from_record(record, source=f'from rank {record["rank"]}')

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

    def records(self) -> dict[str, dict]:
        """The choices made so far as JSON data, ``str(bucket)`` -> :meth:`Choice.to_record`."""
        return {str(bucket): choice.to_record() for bucket, choice in self.choices.items()}


def summarize(choices: Mapping[Bucket, Choice]) -> str:
    """One line on a set of choices: how many buckets, where from, measuring time, the paths.

    Args:
        choices (Mapping[Bucket, Choice]): E.g. ``dispatcher.choices``.

    Returns:
        str: E.g. "22 buckets (measured: 20 in 3.1 s, one candidate: 2); forward: cpu 7;
        input_grad: cpu 7; weight_grad: cpu 5, nchw 3".
    """
    if not choices:
        return '0 buckets'
    sources = Counter(choice.source for choice in choices.values())
    cost = sum(choice.cost for choice in choices.values())
    origins = ', '.join(f'{source}: {count}' + (f' in {cost:.2f} s' if source == 'measured' else '')
                        for source, count in sources.most_common())
    paths = []
    for pass_name in PASSES:
        chosen = Counter(choice.impl for bucket, choice in choices.items()
                         if bucket.pass_name == pass_name)
        if chosen:
            paths.append(f'{pass_name}: ' + ', '.join(f'{impl} {count}'
                                                      for impl, count in chosen.most_common()))
    return f'{len(choices)} buckets ({origins}); ' + '; '.join(paths)


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

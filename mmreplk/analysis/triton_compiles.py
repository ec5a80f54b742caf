"""How many Triton compiles a GPU run will pay for, counted on a CPU without running a kernel.

Compilation and autotuning dominate a first GPU run (GPU.md: 13 first calls took 146 s), so the
GPU session's budget depends on this number. It is counted, not guessed: every Triton launch the
real run would make is replayed at the real shapes on the CPU, with Triton's interpreter
(``TRITON_INTERPRET=1``) and the kernel launch replaced by a recorder, so the package's own
launchers compute the real arguments (sizes, buckets, alignment, precision) while nothing runs
and no input page is touched (inputs are ``torch.empty``).

Per autotuned kernel a new tuning key (Triton's autotuner key: the named arguments plus the
tensors' dtypes) compiles every config; a call in a known key with a new integer
specialisation (Triton specialises integer arguments on ``== 1`` and divisibility by 16)
compiles the chosen config once more. A kernel without an autotuner compiles once per
specialisation.

Which launches the run makes follows from the ops package itself: forced paths run their
backend's passes; ``auto`` runs every candidate :meth:`DepthwiseDispatcher.candidates` gives for
a CUDA tensor of that bucket; backends without Triton kernels are not replayed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from mmreplk.ops import PASSES, DepthwiseConv2d, get_dispatcher, set_depthwise_impl
from .dwconv_benchmark import MODE_PASSES, Cell, cell_unsupported, is_triton_backend

#: One conv pass the real run makes: (pass, input shape (N, C, H, W), K, dtype, TF32 on, impl).
Call = tuple[str, tuple[int, int, int, int], int, torch.dtype, bool, str]


@dataclasses.dataclass
class CompileCount:
    """Expected Triton compiles, per kernel.

    Args:
        per_kernel (dict[str, int]): Kernel name -> compiles.
        tunings (dict[str, int]): Kernel name -> autotuning keys met (each tunes once).
        launches (int): Launches replayed.
        errors (list[str]): Passes that could not be replayed, with the reason.
    """
    per_kernel: dict[str, int]
    tunings: dict[str, int]
    launches: int
    errors: list[str]

    @property
    def total(self) -> int:
        """Compiles in all."""
        return sum(self.per_kernel.values())

    def summary(self) -> str:
        """One line per kernel, then the total."""
        lines = [f'{name}: {n} compiles, {self.tunings.get(name, 0)} tunings'
                 for name, n in sorted(self.per_kernel.items())]
        lines += [f'not replayed: {error}' for error in self.errors]
        lines.append(f'expected Triton compiles: {self.total} ({sum(self.tunings.values())} '
                     f'autotunings, {self.launches} launches replayed)')
        return '\n'.join(lines)


def backbone_calls(model: nn.Module, image_shape: Sequence[int], dtype: torch.dtype, tf32: bool,
                   passes: Sequence[str]) -> list[Call]:
    """The ``auto`` conv passes of one step of ``model`` on images of ``image_shape``.

    The model runs on the meta device (shapes only, nothing computed), each
    :class:`~mmreplk.ops.DepthwiseConv2d` recording its input's shape.

    Args:
        model (nn.Module): Any model (moved to the meta device, so pass a copy you can spare).
        image_shape (Sequence[int]): (N, 3, H, W).
        dtype (torch.dtype): Dtype the convs run in (e.g. bf16 under autocast).
        tf32 (bool): Whether fp32 convs may use TF32 in that run.
        passes (Sequence[str]): The passes each conv runs (the forward, or all three to train).

    Returns:
        list[Call]: One entry per conv and pass.
    """
    model = model.to('meta')
    calls: list[Call] = []
    convs = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]

    def recorder(conv: DepthwiseConv2d):
        # Meta tensors cannot enter the op (autocast has no meta device): record, pass shapes on.
        def forward(x: torch.Tensor) -> torch.Tensor:
            calls.extend((p, tuple(x.shape), conv.kernel_size[0], dtype, tf32, conv.impl)
                         for p in passes)
            return torch.empty_like(x)

        return forward

    for conv in convs:
        conv.forward = recorder(conv)
    try:
        with torch.no_grad():
            model(torch.empty(*image_shape, device='meta'))
    finally:
        for conv in convs:
            del conv.forward
    return calls


def gpu_run_calls(sections: Sequence[str], precisions: Sequence[str],
                  backbones: Sequence[tuple[str, str | dict]], batch_size: int, size: int,
                  second_height: int, table1_cells: Sequence[Cell], table1_batch: int,
                  table1_channels: int) -> list[Call]:
    """The conv passes of :func:`~mmreplk.analysis.gpu_benchmark.run_gpu_benchmark` on a GPU
    with these settings (its defaults are the real run's).

    Returns:
        list[Call]: In the order the run makes them (repeats included).
    """
    from mmreplk.models import reparameterize
    from .gpu_benchmark import DTYPES, table1_impls, table1_runs
    cuda = torch.device('cuda')
    calls: list[Call] = []
    if 'table1' in sections:
        impls = table1_impls(cuda)
        kernels = [impl for impl in impls if is_triton_backend(impl)]
        for precision, cells, tf32 in table1_runs(table1_cells, precisions, True):
            for mode, resolution, kernel_size in cells:
                shape = (table1_batch, table1_channels, resolution, resolution)
                calls += [(p, shape, kernel_size, DTYPES[precision], tf32, impl)
                          for impl in impls for p in MODE_PASSES[mode]
                          if cell_unsupported(impl, mode, cuda, DTYPES[precision], kernel_size,
                                              shape, kernels) is None]
    for backbone_type, arch in backbones:
        if 'backbone' in sections:
            model = set_depthwise_impl(_meta_backbone(backbone_type, arch), 'auto').train()
            for precision in precisions:
                for height in (size, second_height):
                    calls += backbone_calls(model, (batch_size, 3, height, size),
                                            DTYPES[precision], True, PASSES)
        if 'inference' in sections:
            model = reparameterize(_meta_backbone(backbone_type, arch)).eval()
            calls += backbone_calls(set_depthwise_impl(model, 'auto'),
                                    (batch_size, 3, size, size), torch.float32, True,
                                    ('forward', ))
    return calls


def _meta_backbone(backbone_type: str, arch: str | dict) -> nn.Module:
    """A backbone on the meta device: its shapes without allocating or initialising weights."""
    from mmengine.registry import MODELS
    with torch.device('meta'):
        return MODELS.build(dict(type=backbone_type, arch=arch, drop_path_rate=0.0))


def count_compiles(calls: Sequence[Call]) -> CompileCount:
    """Replays the Triton launches of ``calls`` (see the module docstring) and counts compiles.

    Needs ``TRITON_INTERPRET=1`` set before Triton was imported.

    Args:
        calls (Sequence[Call]): The conv passes of the real run.

    Returns:
        CompileCount: The expected compiles.
    """
    errors: list[str] = []
    with replaying_launches() as launches:
        for call in dict.fromkeys(calls):
            for impl in _triton_impls(call):
                try:
                    _replay(impl, call)
                except Exception as error:  # counted as not replayed, the count goes on
                    errors.append(f'{impl} {call[0]} {call[1]} K={call[2]} {call[3]}: '
                                  f'{type(error).__name__}: {error}')
    return _count(launches, errors)


def _interpreting() -> bool:
    import os
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


def _triton_impls(call: Call) -> list[str]:
    pass_name, shape, kernel_size, dtype, _, impl = call
    device = torch.device('cuda')
    if impl != 'auto':
        return [impl] if is_triton_backend(impl) else []
    candidates, _ = get_dispatcher().candidates(pass_name, device, dtype, kernel_size, shape)
    return [name for name in candidates if is_triton_backend(name)]


def _replay(impl: str, call: Call) -> None:
    from .gpu_benchmark import fp32_convs_on_tf32
    pass_name, shape, kernel_size, dtype, tf32, _ = call
    backend = get_dispatcher().backend(impl)
    if backend.unsupported(pass_name, torch.device('cuda'), dtype, kernel_size, shape):
        return
    n, c, h, w = shape
    x = torch.empty(shape, dtype=dtype)
    weight = torch.empty(c, 1, kernel_size, kernel_size, dtype=dtype)
    with fp32_convs_on_tf32(tf32), torch.no_grad():
        if pass_name == 'forward':
            backend.forward(x, weight, None)
        elif pass_name == 'input_grad':
            backend.input_grad(x, weight)
        else:
            backend.weight_grad(x, torch.empty_like(x), kernel_size)


@contextlib.contextmanager
def replaying_launches(launches: list | None = None) -> Iterator[list]:
    """Inside the block, Triton kernels launched under the interpreter are recorded, not run.

    The package's launchers still run in full (argument checks, grids, buckets, alignment), so a
    CPU rehearsal walks every launch of a GPU run at its real shapes in no time; outputs are left
    as allocated (garbage). Needs ``TRITON_INTERPRET=1`` set before Triton was imported.

    Args:
        launches (list, optional): Where to append ``(kernel, positional arguments by name,
            keyword arguments)`` per launch. Defaults to None (a new list).

    Yields:
        list: The recorded launches.
    """
    if not _interpreting():
        raise RuntimeError("replaying Triton launches needs Triton's interpreter: set "
                           'TRITON_INTERPRET=1 before triton is imported')
    from triton.runtime.interpreter import InterpretedFunction
    launches = [] if launches is None else launches

    def record(self, *args, grid, warmup, **kwargs):
        launches.append((self, dict(zip(self.arg_names, args)), kwargs))

    original = InterpretedFunction.run
    InterpretedFunction.run = record
    try:
        yield launches
    finally:
        InterpretedFunction.run = original


def _autotuners() -> list:
    """The Triton autotuners around mmreplk's kernels, wherever the ops package keeps them."""
    from triton.runtime.autotuner import Autotuner
    with warnings.catch_warnings():
        # isinstance() on every live object touches deprecated torch aliases, which warn.
        warnings.simplefilter('ignore')
        return [obj for obj in gc.get_objects() if isinstance(obj, Autotuner)
                and getattr(obj.base_fn, '__module__', '').startswith('mmreplk.')]


def _specialization(kernel, bound: dict) -> tuple:
    """What Triton specialises a launch on beyond the constexprs: integers on == 1 and
    divisibility by 16 (arguments it is told not to specialise excepted)."""
    params = inspect.signature(kernel.fn).parameters
    skip = set(kernel.kwargs.get('do_not_specialize') or ())
    key = []
    for index, (name, param) in enumerate(params.items()):
        value = bound.get(name)
        if 'constexpr' in str(param.annotation):
            key.append((name, str(value)))
        elif isinstance(value, int) and not isinstance(value, bool) and not (
                name in skip or index in skip):
            key.append((name, value == 1, value % 16 == 0))
        elif isinstance(value, torch.Tensor):
            key.append((name, str(value.dtype)))
    return tuple(key)


def _tuned_configs(tuner, named: dict, constexprs: dict) -> int:
    """Configs the autotuner compiles for a new key: all, or those its pruning keeps."""
    prune = getattr(tuner, 'early_config_prune', None)
    return len(prune(tuner.configs, named, **constexprs) if prune else tuner.configs)


def _count(launches: list, errors: list[str]) -> CompileCount:
    tuners = {}
    for tuner in _autotuners():
        # Through any heuristics wrapped between the autotuner and the kernel; the constexprs
        # they derive from a config vary with the config, not the launch.
        inner, derived = tuner.fn, set()
        while not hasattr(inner, 'arg_names') or hasattr(inner, 'values'):
            derived |= set(getattr(inner, 'values', {}))
            inner = inner.fn
        tuners[id(inner)] = tuner, derived
    per_kernel: dict[str, int] = {}
    tunings: dict[str, int] = {}
    seen_keys: set = set()
    seen_compiles: set = set()
    for kernel, named, keywords in launches:
        name = f'{kernel.fn.__module__.rpartition(".")[2]}.{kernel.fn.__name__}'
        bound = {**named, **keywords}
        tuner, derived = tuners.get(id(kernel), (None, set()))
        spec = _specialization(kernel, bound)
        if tuner is None:
            if (name, spec) not in seen_compiles:
                seen_compiles.add((name, spec))
                per_kernel[name] = per_kernel.get(name, 0) + 1
            continue
        # The autotuner's key (its named arguments, then every tensor's dtype); the tile
        # constexprs a config sets are not part of the specialisation it compiles anew.
        config_names = derived | {k for config in tuner.configs for k in config.kwargs}
        spec = tuple(item for item in spec if item[0] not in config_names)
        key = (name, tuple(bound.get(k) for k in tuner.keys)
               + tuple(str(v.dtype) for v in bound.values() if isinstance(v, torch.Tensor)))
        if key not in seen_keys:
            seen_keys.add(key)
            seen_compiles.add((key, spec))
            tunings[name] = tunings.get(name, 0) + 1
            per_kernel[name] = per_kernel.get(name, 0) + _tuned_configs(tuner, named, {
                k: v for k, v in keywords.items() if k not in config_names})
        elif (key, spec) not in seen_compiles:
            seen_compiles.add((key, spec))
            per_kernel[name] = per_kernel.get(name, 0) + 1
    return CompileCount(per_kernel, tunings, len(launches), errors)

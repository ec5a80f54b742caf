"""Throughput of a whole model, and forward latency of a RepLKNet or UniRepLKNet backbone per
implementation.

Timed forms run round-robin (one timed run of each form per round) after the warm-up, and the
median over rounds is reported, so that load changes on a shared machine affect every form alike
and the ratios between forms stay meaningful.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import statistics
from collections.abc import Callable, Sequence

import torch
from mmengine.config import Config
from torch import nn

from mmreplk.apis import load_config
from mmreplk.models import RepLKNet, UniRepLKNet, reparameterize
from mmreplk.ops import set_depthwise_impl
from mmreplk.tasks import synthetic_image, task_adapter
from mmreplk.utils.timing import time_round_robin

#: Backbone families :func:`benchmark_backbone` builds: name -> class.
BACKBONE_FAMILIES = {'RepLKNet': RepLKNet, 'UniRepLKNet': UniRepLKNet}

#: Backbone forms of :func:`benchmark_backbone`: name -> (re-parameterized, depth-wise impl).
BACKBONE_FORMS = {
    'train-nchw': (False, 'nchw'),
    'deploy-nchw': (True, 'nchw'),
    'deploy-auto': (True, 'auto'),
}


@dataclasses.dataclass
class Timing:
    """Timed runs of one form.

    Args:
        label (str): Form name.
        seconds (list[float]): Wall time of each timed run.
        batch_size (int): Images per run.
    """
    label: str
    seconds: list[float]
    batch_size: int

    @property
    def median_s(self) -> float:
        """Median seconds per run."""
        return statistics.median(self.seconds)

    @property
    def ms_per_image(self) -> float:
        """Median milliseconds per image."""
        return 1e3 * self.median_s / self.batch_size

    @property
    def images_per_s(self) -> float:
        """Images per second at the median run time."""
        return self.batch_size / self.median_s


def default_device() -> torch.device:
    """The first GPU if there is one, else the CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def benchmark_model(config: str | os.PathLike | Config,
                    shape: Sequence[int] = (512, 512),
                    deploy: bool = False,
                    batch_size: int = 1,
                    warmup: int = 2,
                    runs: int = 5,
                    device: str | torch.device | None = None) -> list[Timing]:
    """Inference throughput of the model a config builds (random weights), training form and
    optionally deploy form.

    Each run is ``model(inputs, data_samples, mode='predict')`` under ``torch.no_grad`` on a
    preprocessed batch: the whole inference of the config (e.g. sliding windows, NMS, mask
    pasting), without image decoding and preprocessing.

    Args:
        config (str | os.PathLike | Config): A segmentation or detection config.
        shape (Sequence[int]): Image (H, W). Defaults to (512, 512).
        deploy (bool): Also time the re-parameterized model. Defaults to False.
        batch_size (int): Images per run. Defaults to 1.
        warmup (int): Untimed rounds. Defaults to 2.
        runs (int): Timed rounds. Defaults to 5.
        device (str | torch.device, optional): Defaults to :func:`default_device`.

    Returns:
        list[Timing]: 'train' and, with ``deploy``, 'deploy'.
    """
    cfg = load_config(config)
    task = task_adapter(cfg)
    device = torch.device(device) if device is not None else default_device()
    models = {'train': task.build_model(cfg, device=device)}
    if deploy:
        models['deploy'] = reparameterize(copy.deepcopy(models['train']))
    inputs, samples = task.prepare_batch(models['train'], synthetic_image(shape), batch_size)

    def predictor(model: nn.Module) -> Callable[[], object]:
        def work() -> object:
            with torch.no_grad():
                return model(inputs, samples, mode='predict')
        return work

    seconds = time_round_robin({name: predictor(model) for name, model in models.items()},
                               device, warmup, runs)
    return [Timing(name, times, batch_size) for name, times in seconds.items()]


@dataclasses.dataclass
class BackboneBenchmark:
    """Result of :func:`benchmark_backbone`.

    Args:
        arch (str): Arch name (or 'custom').
        shape (tuple[int, int]): Image (H, W).
        device (str): Device the forms ran on.
        threads (int): CPU threads torch used.
        timings (dict[str, Timing]): Per form.
        family (str): Key of :data:`BACKBONE_FAMILIES`. Defaults to 'RepLKNet'.
    """
    arch: str
    shape: tuple[int, int]
    device: str
    threads: int
    timings: dict[str, Timing]
    family: str = 'RepLKNet'

    def speedup(self, slow: str, fast: str) -> float:
        """How many times faster form ``fast`` ran than form ``slow`` (median times)."""
        return self.timings[slow].median_s / self.timings[fast].median_s

    def table(self) -> str:
        """Per-form ms/image and the speed-up of every form over the first one."""
        first = next(iter(self.timings))
        lines = [f'{self.family}-{self.arch} backbone forward, {self.shape[0]}x{self.shape[1]}, '
                 f'eval mode, {self.device} ({self.threads} threads)',
                 f'{"form":<12} {"ms/image":>10} {"speed-up vs " + first:>24}']
        for name, timing in self.timings.items():
            lines.append(f'{name:<12} {timing.ms_per_image:>10.1f} '
                         f'{self.speedup(first, name):>23.2f}x')
        return '\n'.join(lines)


def build_backbone_forms(arch: str | dict, forms: Sequence[str], device: torch.device,
                         family: str = 'RepLKNet') -> dict[str, nn.Module]:
    """One eval-mode backbone per form of :data:`BACKBONE_FORMS`, all with the same weights.

    Args:
        arch (str | dict): Arch of ``family``.
        forms (Sequence[str]): Names from :data:`BACKBONE_FORMS`.
        device (torch.device): Device.
        family (str): Key of :data:`BACKBONE_FAMILIES`. Defaults to 'RepLKNet'.

    Returns:
        dict[str, nn.Module]: Form name -> backbone.
    """
    unknown = [name for name in forms if name not in BACKBONE_FORMS]
    if unknown:
        raise ValueError(f'unknown backbone forms {unknown}; choose from {list(BACKBONE_FORMS)}')
    if family not in BACKBONE_FAMILIES:
        raise ValueError(f'unknown backbone family {family!r}; choose from '
                         f'{list(BACKBONE_FAMILIES)}')
    train = BACKBONE_FAMILIES[family](arch=arch, drop_path_rate=0.).to(device).eval()
    models = {}
    for name in forms:
        folded, impl = BACKBONE_FORMS[name]
        model = copy.deepcopy(train)
        if folded:
            reparameterize(model)
        models[name] = set_depthwise_impl(model, impl)
    return models


def benchmark_backbone(arch: str | dict = '31B',
                       shape: Sequence[int] = (512, 512),
                       batch_size: int = 1,
                       warmup: int = 1,
                       runs: int = 3,
                       device: str | torch.device | None = None,
                       forms: Sequence[str] = tuple(BACKBONE_FORMS),
                       family: str = 'RepLKNet') -> BackboneBenchmark:
    """Forward latency of a backbone in training form with plain NCHW depth-wise convs, in deploy
    form with NCHW, and in deploy form on the optimized path, in one run.

    For UniRepLKNet the training form includes the dilated branches beside every large kernel
    (PyTorch's dilated conv whatever the form's impl: the op takes no dilation) and the BNs; the
    deploy forms have them folded into the large kernel.

    Args:
        arch (str | dict): Arch of ``family``. Defaults to '31B'.
        shape (Sequence[int]): Image (H, W). Defaults to (512, 512).
        batch_size (int): Images per forward. Defaults to 1.
        warmup (int): Untimed rounds. Defaults to 1.
        runs (int): Timed rounds. Defaults to 3.
        device (str | torch.device, optional): Defaults to :func:`default_device`.
        forms (Sequence[str]): Forms to time, from :data:`BACKBONE_FORMS`. Defaults to all.
        family (str): Key of :data:`BACKBONE_FAMILIES`. Defaults to 'RepLKNet'.

    Returns:
        BackboneBenchmark: ms/image per form; ratios via :meth:`BackboneBenchmark.speedup`.
    """
    device = torch.device(device) if device is not None else default_device()
    models = build_backbone_forms(arch, forms, device, family)
    height, width = shape
    image = torch.randn(batch_size, 3, height, width, device=device)

    def forward(model: nn.Module) -> Callable[[], object]:
        def work() -> object:
            with torch.no_grad():
                return model(image)
        return work

    seconds = time_round_robin({name: forward(model) for name, model in models.items()},
                               device, warmup, runs)
    name = arch if isinstance(arch, str) else 'custom'
    return BackboneBenchmark(name, (height, width), str(device), torch.get_num_threads(),
                             {form: Timing(form, times, batch_size)
                              for form, times in seconds.items()}, family)


def profile_forward(model: nn.Module, image: torch.Tensor, row_limit: int = 15) -> str:
    """Where one forward pass spends its time: torch.profiler's table of the costliest ops.

    Args:
        model (nn.Module): Model in eval mode.
        image (torch.Tensor): Input.
        row_limit (int): Ops listed. Defaults to 15.

    Returns:
        str: The table, sorted by the time spent in each op itself.
    """
    with torch.no_grad():
        model(image)
        with torch.profiler.profile(record_shapes=True) as prof:
            model(image)
    return prof.key_averages(group_by_input_shape=True).table(sort_by='self_cpu_time_total',
                                                              row_limit=row_limit)

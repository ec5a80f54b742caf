"""``train``/``test`` entry points over mmengine's Runner, with the checks the tools rely on.

Before a Runner is built: the datasets are checked on disk and guarded against unreadable samples
(:mod:`mmreplk.datasets.bad_samples`), an unset pretrained-backbone path is
reported once (training continues from random initialisation), ``--amp`` is refused on CPU-only
torch, and a ``--launcher pytorch`` run without CUDA is set up for CPU (gloo). A process group
created during the run is released when it ends (destroyed, and the DDP wrapper holding it freed).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import gc
import os
from collections.abc import Iterator

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from mmreplk.datasets.bad_samples import guard_eval_dataset, guard_train_dataset
from mmreplk.datasets.layout import check_dataset_layout
from mmreplk.engine import CrashSafeCheckpointHook, resolve_resume
from mmreplk.engine.dwconv_choices import DwconvChoicesHook
from mmreplk.engine.interrupt import ignore_stop_signals_in_worker
from mmreplk.engine.resume import disk_full
from mmreplk.tasks import known_warnings_filtered
from mmreplk.utils import MissingFileError, ToolError

_SYNC_NORMS = ('SyncBN', 'MMSyncBN')


def _logger() -> MMLogger:
    return MMLogger.get_current_instance()


def resolve_pretrained(cfg: Config) -> Config:
    """Drops an unset ``Pretrained`` backbone init (with one warning) and checks a set one.

    The configs carry ``model.backbone.init_cfg=dict(type='Pretrained', checkpoint=None)`` as the
    field users fill in with ``--cfg-options model.backbone.init_cfg.checkpoint=PATH``.

    Args:
        cfg (Config): Full config (edited in place).

    Returns:
        Config: ``cfg``.

    Raises:
        ToolError: The checkpoint is a local path that does not exist.
    """
    backbone = cfg.get('model', {}).get('backbone')
    init_cfg = backbone.get('init_cfg') if backbone else None
    if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained':
        return cfg
    checkpoint = init_cfg.get('checkpoint')
    if not checkpoint:
        _logger().warning(
            'No pretrained backbone weights set: training starts from random initialisation, '
            'far below the paper\'s figures. Set them with --cfg-options '
            'model.backbone.init_cfg.checkpoint=PATH (e.g. RepLKNet-31B_ImageNet-1K_224.pth).')
        backbone.init_cfg = None
    elif '://' not in str(checkpoint) and not os.path.isfile(checkpoint):
        raise ToolError(f'pretrained backbone checkpoint not found: {checkpoint} '
                        f'(model.backbone.init_cfg.checkpoint)')
    return cfg


def check_amp(cfg: Config) -> None:
    """Refuses AMP without CUDA with a clear message (mmengine's own error is obscure).

    Args:
        cfg (Config): Full config.

    Raises:
        ToolError: AMP is requested and CUDA is not available.
    """
    wrapper = cfg.get('optim_wrapper', {}).get('type')
    if wrapper == 'AmpOptimWrapper' and not torch.cuda.is_available():
        raise ToolError('--amp (AmpOptimWrapper) needs a CUDA GPU, and this torch has none '
                        f'(torch {torch.__version__}); train without --amp on CPU')


def _replace_sync_norms(node: object) -> None:
    if isinstance(node, dict):
        if node.get('type') in _SYNC_NORMS:
            node['type'] = 'BN'
        for value in node.values():
            _replace_sync_norms(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _replace_sync_norms(value)


def prepare_distributed(cfg: Config) -> Config:
    """Makes ``launcher='pytorch'`` work without CUDA: gloo, DDP without device ids, plain BN.

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``; both fail on CPU. So the process group is initialised here
    (mmengine then skips its own initialisation), the DDP wrapper gets ``device_ids=None``, and
    SyncBN, which has no CPU implementation, becomes BN. With CUDA, or with launcher 'none',
    nothing changes.

    Args:
        cfg (Config): Full config (edited in place).

    Returns:
        Config: ``cfg``.

    Raises:
        ToolError: A launcher other than pytorch is asked for without CUDA, or the
            torchrun environment variables are missing.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    if launcher != 'pytorch':
        raise ToolError(f'--launcher {launcher} needs CUDA; on CPU use --launcher pytorch '
                        f'through torchrun (tools/dist_train.sh)')
    missing = [key for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if key not in os.environ]
    if missing:
        raise ToolError(f'--launcher pytorch expects to be started by torchrun '
                        f'(tools/dist_train.sh); environment variables {missing} are not set')
    if not torch_dist.is_initialized():
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout')
        kwargs = {} if timeout is None else {'timeout': datetime.timedelta(seconds=timeout)}
        torch_dist.init_process_group('gloo', rank=int(os.environ['RANK']),
                                      world_size=int(os.environ['WORLD_SIZE']), **kwargs)
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    _replace_sync_norms(cfg.model)
    _logger().info('CPU distributed run: gloo backend, DDP without device ids, SyncBN -> BN')
    return cfg


@contextlib.contextmanager
def _process_group_scope() -> Iterator[bool]:
    """Yields whether the block owns the process group; releases an owned one on the way out.

    mmengine never destroys the group it creates, and a gloo group has no shutdown: its worker
    threads stop only when the last reference to it (the DDP reducer's) goes. Left to interpreter
    shutdown, that teardown races the interpreter's own and can abort a process that finished its
    work ('terminate called without an active exception', SIGABRT), which torchrun reports as a
    failed job. So the group is destroyed, and the garbage still holding it collected, here while
    the interpreter is whole. A group that existed before the block is left alone.
    """
    owns_group = not torch_dist.is_initialized()
    try:
        yield owns_group
    finally:
        if owns_group and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
            gc.collect()


def add_dwconv_choices_hook(cfg: Config) -> Config:
    """Adds :class:`~mmreplk.engine.dwconv_choices.DwconvChoicesHook` to ``custom_hooks``
    unless the config has one: every run keeps its depth-wise conv choices in its work dir.

    Args:
        cfg (Config): Full config (edited in place).

    Returns:
        Config: ``cfg``.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    name = DwconvChoicesHook.__name__
    if not any(hook.get('type') in (name, DwconvChoicesHook) for hook in hooks):
        hooks.append(dict(type=name))
    cfg.custom_hooks = hooks
    return cfg


def build_runner(cfg: Config) -> Runner:
    """Builds the Runner the way mmseg/mmdet tools do (``runner_type`` honoured), with the
    depth-wise conv choices hook (:func:`add_dwconv_choices_hook`).

    Args:
        cfg (Config): Full config.

    Returns:
        Runner: The runner.
    """
    add_dwconv_choices_hook(cfg)
    visualizer = cfg.get('visualizer')
    if isinstance(visualizer, dict):
        # mmseg/mmdet name their visualizer 'visualizer', and mmengine hands back an existing
        # instance of that name, of whatever class: a detection run after a segmentation run in
        # one process would draw with the wrong visualizer. Unnamed, the Runner uses its own
        # experiment name; the visualization hooks find it with get_current_instance().
        visualizer.pop('name', None)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


@contextlib.contextmanager
def _full_disk_stops(work_dir: str) -> Iterator[None]:
    """A full disk or quota outside a checkpoint save (the config dump, a log, a visualisation)
    stops the run with :func:`~mmreplk.engine.resume.disk_full`'s message, not a traceback."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise disk_full(err, work_dir) from err


def _workers_ignore_stop_signals(runner: Runner) -> None:
    """Data loaders the runner builds from now on start workers that ignore SIGINT and SIGUSR1.

    The loops build their loaders inside ``runner.train()`` and start the workers at once, so
    the runner's builder is wrapped for this runner only (see
    :func:`~mmreplk.engine.interrupt.ignore_stop_signals_in_worker` for why).
    """
    build = runner.build_dataloader

    def build_dataloader(*args, **kwargs) -> object:
        loader = build(*args, **kwargs)
        if isinstance(loader, DataLoader) and loader.num_workers > 0:
            loader.worker_init_fn = functools.partial(ignore_stop_signals_in_worker,
                                                      loader.worker_init_fn)
        return loader

    runner.build_dataloader = build_dataloader


def train(cfg: Config) -> Runner:
    """Checks the setup, builds a Runner and trains.

    Args:
        cfg (Config): Full config, e.g. from :func:`mmreplk.apis.merge_train_args`.

    Returns:
        Runner: The runner after training (its ``work_dir`` holds logs and checkpoints). After a
            distributed run that created its process group, ``runner.model`` is the bare model.
    """
    check_dataset_layout(cfg, splits=('train', 'val'))
    guard_train_dataset(cfg)
    guard_eval_dataset(cfg, 'val')
    check_amp(cfg)
    resolve_pretrained(cfg)
    resolve_resume(cfg)
    with _process_group_scope() as owns_group, _full_disk_stops(cfg.get('work_dir') or '.'):
        prepare_distributed(cfg)
        with known_warnings_filtered(cfg):
            runner = build_runner(cfg)
            hooks = [hook for hook in getattr(runner, 'hooks', [])
                     if isinstance(hook, CrashSafeCheckpointHook)]
            if hooks:
                _workers_ignore_stop_signals(runner)
            for hook in hooks:
                hook.catch_signals()
            try:
                runner.train()
            finally:
                # A run that ends with an exception skips after_train, which gives the stop
                # signals (SIGINT included) their previous handlers back.
                for hook in hooks:
                    hook.release_signals()
        if owns_group and is_model_wrapper(runner.model):
            # The wrapper holds the group being released; the bare model stays usable.
            runner.model = runner.model.module
    return runner


def test(cfg: Config) -> dict:
    """Checks the setup, builds a Runner and evaluates ``cfg.load_from`` on the test split.

    Args:
        cfg (Config): Full config, e.g. from :func:`mmreplk.apis.merge_test_args`.

    Returns:
        dict: The metrics, e.g. ``{'mIoU': 41.2, 'aAcc': ..., 'mAcc': ...}``.
    """
    check_dataset_layout(cfg, splits=('test',))
    guard_eval_dataset(cfg, 'test')
    # Metrics of weights that were not loaded are refused (mmengine only logs the keys).
    cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='CheckpointCoverageHook')]
    load_from = cfg.get('load_from')
    if not load_from or ('://' not in str(load_from) and not os.path.isfile(load_from)):
        raise MissingFileError('checkpoint file', load_from)
    with _process_group_scope():
        prepare_distributed(cfg)
        with known_warnings_filtered(cfg):
            return build_runner(cfg).test()

"""Loading a config and applying the runner tools' arguments to it.

A tool loads its config with :func:`load_config` (``--cfg-options`` applied) and turns its
arguments into config edits with one ``merge_*_args`` function; those functions only edit the
config (no I/O), so tests call them directly. The flags themselves are declared in
:mod:`mmreplk.apis.cli`.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, ConfigDict

from mmreplk.tasks import task_adapter
from mmreplk.utils import ToolError


def load_config(path: str | os.PathLike, cfg_options: dict | None = None) -> Config:
    """Reads a config file and applies ``--cfg-options`` overrides.

    Args:
        path (str | os.PathLike): Config file.
        cfg_options (dict, optional): Overrides as parsed by ``DictAction``. Defaults to None.

    Returns:
        Config: The config.

    Raises:
        ToolError: The file does not exist.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise ToolError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _apply_runner_args(cfg: Config, args: argparse.Namespace) -> None:
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(cfg.filename))[0])


def merge_train_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Applies ``tools/train.py`` arguments to a config.

    ``--resume`` alone resumes from the latest checkpoint in the work dir; ``--resume CKPT``
    from that file. ``--amp`` switches the optimizer wrapper to ``AmpOptimWrapper``.

    Args:
        cfg (Config): Config loaded by :func:`load_config` (edited in place).
        args (argparse.Namespace): With ``work_dir``, ``launcher``, ``resume`` (None, 'auto' or
            a path) and ``amp``.

    Returns:
        Config: ``cfg``.
    """
    _apply_runner_args(cfg, args)
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise ToolError(f'--amp needs optim_wrapper type OptimWrapper, but the config uses '
                            f'{wrapper}; set AMP in the config instead')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def merge_test_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Applies ``tools/test.py`` arguments to a segmentation or detection config.

    ``--out`` and ``--show-dir`` are wired by the config's task adapter (segmentation: prediction
    PNGs into the ``--out`` folder; detection: predictions dumped to the ``--out`` pickle file);
    painted predictions are saved into ``--show-dir``.
    ``--tta``: the config's ``tta_model`` wraps the model and ``tta_pipeline`` replaces the
    test pipeline.

    Args:
        cfg (Config): Config loaded by :func:`load_config` (edited in place).
        args (argparse.Namespace): With ``checkpoint``, ``work_dir``, ``launcher``, ``out``,
            ``show_dir`` and ``tta``.

    Returns:
        Config: ``cfg``.
    """
    _apply_runner_args(cfg, args)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        task_adapter(cfg, '--show-dir support').set_show_dir(cfg, args.show_dir)
    if args.out:
        task_adapter(cfg, '--out support').set_test_out(cfg, args.out)
    if args.tta:
        missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
        if missing:
            raise ToolError(f'--tta needs {" and ".join(missing)} in the config '
                            f'(see configs/_base_/datasets/ for examples)')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    return cfg

"""Loading a config and applying the runner tools' arguments to it.

Every tool and library function that takes a config path loads it with :func:`load_config`
(``--cfg-options`` applied and checked); the tools turn their arguments into config edits with
one ``merge_*_args`` function; those functions only edit the config (no I/O), so tests call them
directly. The flags themselves are declared in :mod:`mmreplk.apis.cli`.
"""
from __future__ import annotations

import argparse
import difflib
import inspect
import os
import os.path as osp
from collections.abc import Mapping

from mmengine.config import Config, ConfigDict
from mmengine.registry import MODELS, Registry
from torch import nn

from mmreplk.tasks import task_adapter
from mmreplk.utils import ConfigError, MissingFileError, ToolError

#: Top-level config entries whose typed dicts are built by a registry: the registry.
_BUILT_BY = {'model': MODELS}


def load_config(config: str | os.PathLike | Config, cfg_options: dict | None = None) -> Config:
    """Reads a config file (or takes a loaded one) and applies ``--cfg-options`` overrides.

    An override key that reaches a class which takes no such argument is refused here, with
    the close matches (see :func:`check_option_keys`), before anything is built.

    Args:
        config (str | os.PathLike | Config): Config file, or a loaded config (edited in place
            by ``cfg_options``).
        cfg_options (dict, optional): Overrides as parsed by ``DictAction``. Defaults to None.

    Returns:
        Config: The config.

    Raises:
        MissingFileError: The file does not exist.
        ConfigError: An override key is not an argument of the class it reaches.
    """
    if isinstance(config, Config):
        cfg = config
    else:
        path = os.fspath(config)
        if not osp.isfile(path):
            raise MissingFileError('config file', path)
        cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        check_option_keys(cfg, cfg_options)
    return cfg


def check_option_keys(cfg: Config, cfg_options: Mapping) -> None:
    """Refuses an override key that names no argument of the class it reaches.

    ``model.backbone.archh=31B`` would otherwise fail only when the model is built, after the
    runner has logged the whole config, as a ``TypeError`` deep in a traceback. Keys are
    checked where a typed dict of :data:`_BUILT_BY` is passed to its class as keyword arguments;
    dicts under ``*_cfg`` keys are not (mmcv's layer builders and initializers take keys beyond
    the class's arguments, e.g. ``norm_cfg.requires_grad``), nor are classes that accept any
    keyword.

    Args:
        cfg (Config): The config, with the overrides applied.
        cfg_options (Mapping): The overrides (dotted keys).

    Raises:
        ConfigError: One line naming the key, the class it reached and the close matches.
    """
    for key in cfg_options:
        problem = _unknown_argument(cfg, key)
        if problem:
            raise ConfigError(f'unknown config key {key}: {problem}')


def _unknown_argument(cfg: Config, key: str) -> str | None:
    parts = key.split('.')
    registry = _BUILT_BY.get(parts[0])
    if registry is None:
        return None
    node = cfg.get(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, Mapping):
            return None
        type_name = node.get('type')
        if isinstance(type_name, str) and part not in ('type', '_scope_') and \
                not parts[i - 1].endswith('_cfg'):
            target = _registered(registry, type_name, cfg.get('default_scope'))
            accepted = _accepted_arguments(target) if target is not None else None
            if accepted is not None and part not in accepted:
                matches = difflib.get_close_matches(part, sorted(accepted), n=3)
                hint = ('did you mean ' + ' or '.join(f'`{m}`' for m in matches) + '?' if matches
                        else f'it takes {", ".join(sorted(accepted))}')
                return (f'{target.__name__} (reached by {".".join(parts[:i])}) takes no '
                        f'argument {part!r}; {hint}')
        node = node.get(part)
    return None


def _registered(registry: Registry, type_name: str, scope: str | None) -> object | None:
    with registry.switch_scope_and_registry(scope) as scoped:
        return scoped.get(type_name)


def _accepted_arguments(target: object) -> set[str] | None:
    """Keyword arguments ``target`` accepts, or None if it accepts any (or cannot be read).

    A class's ``**kwargs`` are followed up its MRO (OpenMMLab classes pass them on to their
    base), until an ``__init__`` without them closes the set.
    """
    functions = ([klass.__dict__['__init__'] for klass in inspect.getmro(target)
                  if '__init__' in klass.__dict__] if inspect.isclass(target) else [target])
    names: set[str] = set()
    for function in functions:
        if function is nn.Module.__init__:
            # Takes *args/**kwargs only to refuse them with a TypeError.
            return names
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in parameters if p.name != 'self' and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
    return None


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

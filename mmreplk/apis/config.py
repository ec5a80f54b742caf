"""Command-line arguments shared by the tools, and the pure functions that apply them to a config.

Each tool builds its parser from :func:`add_runner_args` plus its own flags, loads the config with
:func:`load_config`, and turns its arguments into config edits with one ``merge_*_args`` function;
those functions only edit the config (no I/O), so tests call them directly.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import os.path as osp
from collections.abc import Callable

from mmengine.config import Config, ConfigDict, DictAction

from mmreplk.utils.checkpoint import trusted_checkpoints
from .errors import ToolError

LAUNCHERS = ('none', 'pytorch', 'slurm')


def add_runner_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the flags every runner-based tool shares: work dir, config overrides, launcher.

    Args:
        parser (argparse.ArgumentParser): The tool's parser (with its positional arguments).

    Returns:
        argparse.ArgumentParser: ``parser`` itself.
    """
    parser.add_argument('--work-dir', help='folder for logs and checkpoints '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. '
                        'model.backbone.init_cfg.checkpoint=weights/RepLKNet-31B_ImageNet-1K_224.pth '
                        'train_dataloader.batch_size=4 (lists: key="[a,b]", no spaces)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher for multi-process runs (tools/dist_train.sh uses pytorch)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    return add_trust_arg(parser)


def add_trust_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--trust-checkpoint``, the opt-in named by :class:`UntrustedCheckpointError`.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.

    Returns:
        argparse.ArgumentParser: ``parser`` itself.
    """
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load checkpoints that need full unpickling; that runs any code '
                        'they contain, so only for files whose origin you trust')
    return parser


def checkpoint_trust(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The context a tool loads checkpoints in: all trusted with ``--trust-checkpoint``.

    Args:
        args (argparse.Namespace): Parsed arguments of a parser given :func:`add_trust_arg`.

    Returns:
        contextlib.AbstractContextManager: :func:`~mmreplk.utils.trusted_checkpoints` or a
        no-op context.
    """
    return trusted_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: list[str] | None = None) -> argparse.Namespace:
    """Parses arguments and exports ``LOCAL_RANK`` for launchers that pass it as a flag.

    Args:
        parser (argparse.ArgumentParser): Parser built with :func:`add_runner_args`.
        argv (list[str], optional): Arguments; defaults to ``sys.argv[1:]``.

    Returns:
        argparse.Namespace: Parsed arguments.
    """
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


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


def _test_options(scope: str | None, flag: str) -> Callable:
    handlers = {'mmseg': _SEG_TEST_OPTIONS, 'mmdet': _DET_TEST_OPTIONS}.get(scope)
    if handlers is None:
        raise ToolError(f'{flag} is supported for configs with default_scope mmseg or mmdet, '
                        f'not {scope!r}')
    return handlers[flag]


def _visualization_hook(cfg: Config) -> ConfigDict:
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ToolError('--show-dir needs a visualization hook in the config: add '
                        "default_hooks.visualization=dict(type='SegVisualizationHook') "
                        "(or 'DetVisualizationHook')")
    return hook


def _seg_show_dir(cfg: Config, show_dir: str) -> None:
    hook = _visualization_hook(cfg)
    hook.draw = True
    # mmseg's hook paints one batch in 50 by default; --show-dir means every image.
    hook.interval = 1
    cfg.visualizer.save_dir = show_dir


def _det_show_dir(cfg: Config, show_dir: str) -> None:
    hook = _visualization_hook(cfg)
    hook.draw = True
    hook.test_out_dir = show_dir


def _seg_out(cfg: Config, out: str) -> None:
    # IoUMetric writes one prediction PNG per image there (and still computes the metric).
    for evaluator in _as_list(cfg.test_evaluator):
        evaluator.output_dir = out


def _det_out(cfg: Config, out: str) -> None:
    if not out.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out for detection configs is a pickle file (.pkl), got {out}')
    cfg.test_evaluator = _as_list(cfg.test_evaluator) + [
        dict(type='DumpDetResults', out_file_path=out)]


def _as_list(evaluator: dict | list) -> list:
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


_SEG_TEST_OPTIONS = {'--show-dir': _seg_show_dir, '--out': _seg_out}
_DET_TEST_OPTIONS = {'--show-dir': _det_show_dir, '--out': _det_out}


def merge_test_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Applies ``tools/test.py`` arguments to a segmentation or detection config.

    ``--out``: mmseg writes prediction PNGs into that folder; mmdet dumps predictions to that
    pickle file (``DumpDetResults``). ``--show-dir``: painted predictions are saved there.
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
    scope = cfg.get('default_scope')
    if args.show_dir:
        _test_options(scope, '--show-dir')(cfg, args.show_dir)
    if args.out:
        _test_options(scope, '--out')(cfg, args.out)
    if args.tta:
        missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
        if missing:
            raise ToolError(f'--tta needs {" and ".join(missing)} in the config '
                            f'(see configs/_base_/datasets/ for examples)')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    return cfg

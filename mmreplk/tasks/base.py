"""The task adapter: everything the library does differently for segmentation and detection.

A config names its task through ``default_scope`` ('mmseg', 'mmdet', ...). :func:`task_adapter`
looks that scope up in :data:`TASK_ADAPTERS` once, and every caller asks the adapter instead of
comparing scope strings. A new task is one module that registers a :class:`TaskAdapter` subclass
under its scope and overrides what it supports; a capability it does not override fails with a
:class:`~mmreplk.utils.ConfigError` that names the task.

Building the model from a config and a checkpoint is the same for every task, so it is defined
here once (:meth:`TaskAdapter.build_model`) and not overridden.
"""
from __future__ import annotations

import abc
import contextlib
import copy
import os
import pathlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DATASETS, MODELS, Registry, init_default_scope
from torch import nn

from mmreplk.models import is_folded
from mmreplk.utils import ConfigError, load_weights, read_state_dict

#: Task adapters by config ``default_scope``.
TASK_ADAPTERS = Registry('task adapter')

#: ``deploy`` value of :meth:`TaskAdapter.build_model`: the checkpoint's form decides.
DEPLOY_FROM_CHECKPOINT = 'checkpoint'


class Predictor(abc.ABC):
    """Task-specific half of folder inference: runs a model on images and writes its outputs.

    Args:
        cfg (Config): The model's config (with a top-level ``test_pipeline``).
        checkpoint (str): Local checkpoint path, read under the checkpoint trust policy of
            :mod:`mmreplk.utils.checkpoint`.
        device (str): Torch device, e.g. 'cpu' or 'cuda:0'.
    """

    def __init__(self, cfg: Config, checkpoint: str, device: str) -> None:
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.device = device

    @abc.abstractmethod
    def predict(self, images: list[np.ndarray]) -> list:
        """Runs the model.

        Args:
            images (list[np.ndarray]): BGR uint8 images of shape (H, W, 3), sizes may differ.

        Returns:
            list: One result per image, in order.
        """

    @abc.abstractmethod
    def save(self, image: np.ndarray, result, out_stem: pathlib.Path) -> list[pathlib.Path]:
        """Writes the outputs for one image.

        Args:
            image (np.ndarray): The BGR uint8 image given to :meth:`predict`.
            result: Its entry in :meth:`predict`'s return value.
            out_stem (pathlib.Path): Output path without suffix; files are named
                ``out_stem`` + a suffix. Its parent folder exists.

        Returns:
            list[pathlib.Path]: The files written.
        """


class InferencePath(NamedTuple):
    """A model's inference forward as one module taking an image tensor (for FLOP counting).

    Args:
        module (nn.Module): Calls the model's parts on an image (N, 3, H, W).
        prefix (str): Name under which ``module`` holds the model, e.g. 'segmentor.'.
        excluded (tuple[str, ...]): Top-level children off the inference path (training only).
    """
    module: nn.Module
    prefix: str
    excluded: tuple[str, ...] = ()


class KnownWarning(NamedTuple):
    """An upstream warning that is harmless where this package triggers it.

    Args:
        message (str): Regular expression matching the start of the message.
        module (str): Regular expression matching the module that warns.
        category (type[Warning]): Its class. Defaults to ``UserWarning``.
    """
    message: str
    module: str
    category: type[Warning] = UserWarning


class TaskAdapter:
    """What one task (a config ``default_scope``) does its own way.

    Subclasses set :attr:`task` and override the capabilities they support; the defaults raise
    a :class:`~mmreplk.utils.ConfigError` naming the task and the missing capability.

    Args:
        scope (str): The ``default_scope`` the adapter was registered under.
    """

    #: The task in words, for messages.
    task: str = 'custom'
    #: Upstream warnings this task's library raises on every run although nothing is wrong;
    #: :meth:`known_warnings_filtered` silences them around the calls that raise them.
    known_warnings: tuple[KnownWarning, ...] = ()

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def _unsupported(self, what: str) -> ConfigError:
        return ConfigError(f'{what} is not available for {self.task} configs '
                           f'(default_scope {self.scope!r})')

    @contextlib.contextmanager
    def known_warnings_filtered(self) -> Iterator[None]:
        """Within this context, the task's :attr:`known_warnings` are not shown."""
        with warnings.catch_warnings():
            for known in self.known_warnings:
                warnings.filterwarnings('ignore', known.message, known.category, known.module)
            yield

    # -- model building: one way for every task --------------------------------------------

    def build_model(self, cfg: Config, checkpoint: str | os.PathLike | None = None,
                    deploy: bool | str | None = None, device: str | torch.device = 'cpu',
                    strict: str = 'exact') -> nn.Module:
        """Builds the config's model in eval mode with plain BatchNorm, optionally with weights.

        ``init_cfg`` files (pretrained backbones) are not loaded: the weights come from
        ``checkpoint``, if any, whose ``meta['dataset_meta']`` (class names, palette) becomes the
        model's ``dataset_meta``.

        Args:
            cfg (Config): The task's config.
            checkpoint (str | os.PathLike, optional): Whole-model weights, read under the trust
                policy and loaded in ``strict`` mode. Defaults to None.
            deploy (bool | str, optional): Sets ``model.backbone.deploy``; None keeps the
                config's value; :data:`DEPLOY_FROM_CHECKPOINT` builds the form the checkpoint
                holds (folded or not). Defaults to None.
            device (str | torch.device): Where to put the model. Defaults to 'cpu'.
            strict (str): Mode of :func:`~mmreplk.utils.load_weights`. Defaults to 'exact'.

        Returns:
            nn.Module: The model.
        """
        init_default_scope(self.scope)
        weights = None if checkpoint is None else read_state_dict(checkpoint)
        if deploy == DEPLOY_FROM_CHECKPOINT:
            if weights is None:
                raise ValueError(f'deploy={DEPLOY_FROM_CHECKPOINT!r} needs a checkpoint')
            deploy = is_folded(weights[0])
        model_cfg = copy.deepcopy(cfg.model)
        if deploy is not None:
            model_cfg.backbone.deploy = deploy
        try:
            with self.known_warnings_filtered():
                model = MODELS.build(model_cfg)
        except TypeError as err:
            if deploy and 'deploy' in str(err):
                raise ConfigError(f'backbone {model_cfg.backbone.get("type")!r} has no deploy '
                                  'form; re-parameterization needs a RepLKNet backbone') from None
            raise
        model = revert_sync_batchnorm(model)
        if weights is not None:
            state_dict, meta = weights
            report = load_weights(model, state_dict, strict, os.fspath(checkpoint))
            if report.missing or report.dropped:
                MMLogger.get_current_instance().warning(report.summary())
            if meta.get('dataset_meta'):
                model.dataset_meta = dict(meta['dataset_meta'])
        return model.to(device).eval()

    def dataset_meta(self, cfg: Config, model: nn.Module) -> dict:
        """Class names (and palette): the checkpoint's, else those of the config's test dataset.

        Args:
            cfg (Config): The model's config.
            model (nn.Module): Built by :meth:`build_model`.

        Returns:
            dict: The dataset meta information, keys lower-cased.
        """
        meta = getattr(model, 'dataset_meta', None)
        if not meta:
            dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
            dataset_cfg['lazy_init'] = True
            with self.known_warnings_filtered():
                meta = DATASETS.build(dataset_cfg).metainfo
        return {key.lower(): value for key, value in meta.items()}

    # -- capabilities each task provides -------------------------------------------------------

    def build_predictor(self, cfg: Config, checkpoint: str, device: str) -> Predictor:
        """The :class:`Predictor` of folder inference (options beyond these are task-specific).

        Args:
            cfg (Config): The task's config.
            checkpoint (str): Local checkpoint path.
            device (str): Torch device.

        Returns:
            Predictor: Ready to predict.
        """
        raise self._unsupported('folder inference')

    def prepare_batch(self, model: nn.Module, image: np.ndarray,
                      batch_size: int = 1) -> tuple[torch.Tensor, list]:
        """Runs an image through the model's data preprocessor, with the metadata it needs.

        Args:
            model (nn.Module): A model of this task.
            image (np.ndarray): BGR uint8 image of shape (H, W, 3).
            batch_size (int): Copies of the image in the batch. Defaults to 1.

        Returns:
            tuple[torch.Tensor, list]: Normalized inputs (N, 3, H', W') on the model's device
            and their data samples.
        """
        height, width = image.shape[:2]
        meta = dict(ori_shape=(height, width), img_shape=(height, width),
                    pad_shape=(height, width))
        samples = [self.data_sample(meta) for _ in range(batch_size)]
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        data = model.data_preprocessor(dict(inputs=[tensor] * batch_size, data_samples=samples),
                                       False)
        return data['inputs'], data['data_samples']

    def data_sample(self, meta: dict) -> object:
        """The task's data sample for an unlabelled, unresized image.

        Args:
            meta (dict): ``ori_shape``, ``img_shape`` and ``pad_shape``.

        Returns:
            object: E.g. an mmseg ``SegDataSample``.
        """
        raise self._unsupported('a synthetic batch')

    def comparable_outputs(self, model: nn.Module, inputs: torch.Tensor,
                           data_samples: list) -> list[torch.Tensor]:
        """The outputs that must not change when the backbone is re-parameterized.

        Args:
            model (nn.Module): A model of this task in eval mode.
            inputs (torch.Tensor): Preprocessed inputs (from :meth:`prepare_batch`).
            data_samples (list): Their data samples.

        Returns:
            list[torch.Tensor]: Output tensors.
        """
        raise self._unsupported('comparing outputs')

    def inference_path(self, model: nn.Module, shape: Sequence[int]) -> InferencePath:
        """The inference forward as one module on an image tensor, for counting FLOPs.

        Args:
            model (nn.Module): A model of this task in eval mode.
            shape (Sequence[int]): Image (H, W).

        Returns:
            InferencePath: The module and how its children map to the model's.
        """
        raise self._unsupported(f'FLOP counting of {type(model).__name__}')

    def export_graph(self, model: nn.Module) -> nn.Module:
        """The model as one module from raw image to output, for ONNX export.

        Args:
            model (nn.Module): A deploy-form model of this task in eval mode.

        Returns:
            nn.Module: Maps (N, 3, H, W) float BGR images in [0, 255] to the output.
        """
        raise self._unsupported('ONNX export')

    def set_test_out(self, cfg: Config, out: str) -> None:
        """Makes ``tools/test.py --out OUT`` keep the predictions (edits ``cfg`` in place).

        Args:
            cfg (Config): The task's config.
            out (str): The ``--out`` value.
        """
        raise self._unsupported('--out')

    def set_show_dir(self, cfg: Config, show_dir: str) -> None:
        """Makes ``tools/test.py --show-dir DIR`` paint every prediction into ``show_dir``.

        Args:
            cfg (Config): The task's config (edited in place).
            show_dir (str): The ``--show-dir`` value.
        """
        raise self._unsupported('--show-dir')


def visualization_hook(cfg: Config, hook_type: str) -> ConfigDict:
    """The config's visualization hook, or an error saying how to add one for ``--show-dir``.

    Args:
        cfg (Config): A config.
        hook_type (str): The task's hook, for the message, e.g. 'SegVisualizationHook'.

    Returns:
        ConfigDict: ``cfg.default_hooks.visualization``.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ConfigError('--show-dir needs a visualization hook in the config: add '
                          f"default_hooks.visualization=dict(type='{hook_type}')")
    return hook


def as_list(entry: Mapping | Sequence) -> list:
    """A config entry that may be a dict or a list of dicts (``test_evaluator``), as a list."""
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def known_warnings_filtered(cfg: Config) -> contextlib.AbstractContextManager:
    """:meth:`TaskAdapter.known_warnings_filtered` of the config's task, for code that runs any
    config (a scope without an adapter filters nothing).

    Args:
        cfg (Config): A config.

    Returns:
        contextlib.AbstractContextManager: The context.
    """
    scope = cfg.get('default_scope')
    adapter_cls = TASK_ADAPTERS.get(scope) if isinstance(scope, str) else None
    if adapter_cls is None:
        return contextlib.nullcontext()
    return adapter_cls(scope).known_warnings_filtered()


def task_adapter(config: Config | str, needed_for: str = 'task adapter') -> TaskAdapter:
    """The adapter of a config's task, chosen by its ``default_scope``.

    Args:
        config (Config | str): A config, or a ``default_scope`` value.
        needed_for (str): What the caller needs, for the error message. Defaults to
            'task adapter'.

    Returns:
        TaskAdapter: The registered adapter.

    Raises:
        ConfigError: No adapter is registered for the scope.
    """
    scope = config if isinstance(config, str) else config.get('default_scope')
    adapter_cls = TASK_ADAPTERS.get(scope) if isinstance(scope, str) else None
    if adapter_cls is None:
        known = list(TASK_ADAPTERS.module_dict)
        listed = ', '.join(known[:-1]) + f' or {known[-1]}' if len(known) > 1 else ''.join(known)
        raise ConfigError(f'no {needed_for} for default_scope {scope!r}: task adapters are '
                          f'registered for default_scope {listed} (set default_scope, e.g. by '
                          "inheriting the task's _base_/default_runtime.py)")
    return adapter_cls(scope)

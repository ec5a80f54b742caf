"""What RepLKNet and UniRepLKNet decide alike: arch lookup, argument checks, frozen stages,
``norm_eval``, pretrained loading and folding."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmreplk.models.reparameterize import reparameterize
from mmreplk.utils import LoadReport, load_weights

# The norm types that folding can merge into the preceding conv.
FOLDABLE_NORM_TYPES = ('BN', 'BN2d', 'SyncBN', 'MMSyncBN')


class LargeKernelBackbone(BaseModule):
    """Base of the multi-stage large-kernel backbones.

    A subclass sets ``arch_settings`` (named archs) and ``arch_keys`` (the keys a custom arch
    dict needs), builds its layers, and answers :meth:`_frozen_modules` and
    :meth:`_load_pretrained`; this class does the rest the same way for every family.

    Args:
        init_cfg (dict | list[dict], optional): Initialization config; ``type='Pretrained'``
            goes through :meth:`_load_pretrained`. Defaults to None.
    """

    arch_settings: dict[str, dict] = {}
    arch_keys: tuple[str, ...] = ()

    @classmethod
    def _resolve_arch(cls, arch: str | dict) -> dict:
        """The settings of a named arch, or a checked copy of a custom arch dict."""
        family = cls.__name__
        if isinstance(arch, str):
            if arch not in cls.arch_settings:
                raise KeyError(f'unknown {family} arch {arch!r}; choose one of '
                               f'{list(cls.arch_settings)} or pass a dict with keys '
                               f'{cls.arch_keys}')
            return dict(cls.arch_settings[arch])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got {type(arch).__name__}')
        missing = [key for key in cls.arch_keys if key not in arch]
        if missing:
            raise KeyError(f'custom {family} arch is missing {missing}; it needs all of '
                           f'{cls.arch_keys}')
        unknown = sorted(set(arch) - set(cls.arch_keys))
        if unknown:
            raise KeyError(f'custom {family} arch has unknown keys {unknown}; allowed: '
                           f'{cls.arch_keys}')
        return cls._custom_arch(arch)

    @classmethod
    def _custom_arch(cls, arch: dict) -> dict:
        """A custom arch dict with the right keys, normalized and checked as the family needs."""
        return dict(arch)

    def _set_common_args(self, num_stages: int, out_indices: int | Sequence[int],
                         norm_cfg: dict, drop_path_rate: float, frozen_stages: int,
                         norm_eval: bool, with_cp: bool, deploy: bool, dwconv_impl: str) -> None:
        """Checks the arguments every family shares and keeps them as attributes."""
        if deploy and norm_cfg['type'] not in FOLDABLE_NORM_TYPES:
            raise ValueError(f'deploy=True folds norm layers into convs, which needs BatchNorm; '
                             f'got norm_cfg type {norm_cfg["type"]!r}')
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.num_stages = num_stages
        self.out_indices = resolve_out_indices(out_indices, num_stages)
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy
        self.dwconv_impl = dwconv_impl

    def _frozen_modules(self) -> list[nn.Module]:
        """The modules that ``frozen_stages`` freezes (the family's stem and stage layout)."""
        raise NotImplementedError

    def _load_pretrained(self, checkpoint: str, prefix: str | None):
        """Loads a checkpoint into the backbone and returns a report with ``summary()``."""
        raise NotImplementedError

    def load_complete(self, state_dict: Mapping[str, torch.Tensor], source: str) -> LoadReport:
        """Loads backbone-named weights that must hold every weight the family's files carry.

        Args:
            state_dict (Mapping[str, torch.Tensor]): Weights with backbone key names; extra
                keys are ignored.
            source (str): Where they came from, for messages.

        Returns:
            LoadReport: Loaded, missing and dropped keys.
        """
        return load_weights(self, state_dict, 'complete', source)

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> LargeKernelBackbone:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            # mmengine's generic loader cannot drop classifier keys or recognise a wrong arch.
            report = self._load_pretrained(init_cfg['checkpoint'], init_cfg.get('prefix'))
            MMLogger.get_current_instance().info(report.summary())
            self._is_init = True
            return
        super().init_weights()

    def switch_to_deploy(self) -> None:
        """Folds the training-time branches and every BN of the backbone, in place."""
        reparameterize(self)


def linear_rates(last: float, count: int) -> list[float]:
    """``count`` rates from 0 to ``last``, in plain Python so the model builds on the meta device."""
    if count == 1:
        return [0.]
    return [last * i / (count - 1) for i in range(count)]


def resolve_out_indices(out_indices: int | Sequence[int], num_stages: int) -> tuple[int, ...]:
    """Sorted, de-duplicated stage indices; negative ones count from the end."""
    indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
    if not indices:
        raise ValueError('out_indices must name at least one stage')
    resolved = []
    for index in indices:
        if not -num_stages <= index < num_stages:
            raise IndexError(f'out_indices entry {index} is out of range for {num_stages} stages')
        resolved.append(index % num_stages)
    return tuple(sorted(set(resolved)))

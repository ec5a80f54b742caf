"""Turning released or mmpretrain-converted RepLKNet and UniRepLKNet files into clean backbone
checkpoints.

Key mapping and reading the structure off the tensor shapes are the backbone's own
(:mod:`mmreplk.models.backbones.replknet_weights`); this module checks the weights against the
network they describe and writes the backbone weights as a ``.pth`` (``{'meta', 'state_dict'}``)
or ``.safetensors`` file that ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
import os
from pathlib import Path

import torch

from mmreplk.models import (RepLKNet, UniRepLKNet, arch_name, infer_arch, match_state_dict,
                            to_backbone_state_dict)
from mmreplk.models.backbones.replknet_weights import RELEASE_PREFIXES
from mmreplk.models.backbones.unireplknet_keys import (infer_unireplknet_arch,
                                                       is_unireplknet_state_dict,
                                                       match_unireplknet_state_dict,
                                                       unireplknet_arch_name, unireplknet_roots)
from mmreplk.utils import (CheckpointMismatchError, extract_backbone, import_optional,
                           load_checkpoint_file, unwrap_state_dict)


@dataclasses.dataclass
class ConversionReport:
    """What :func:`convert_checkpoint` found and wrote.

    Args:
        dst (Path): The written file.
        arch (str): Arch name ('31B', '31L', 'XL') or 'custom'.
        arch_setting (dict): The full arch dict the weights fit.
        deploy (bool): Whether the weights are re-parameterized.
        norm_intermediate_features (bool): Whether the file has stage-output norms.
        num_tensors (int): Tensors written.
        dropped (list[str]): Source keys left out (classifier, non-backbone, unknown).
        missing (list[str]): Backbone keys the file lacks.
    """
    dst: Path
    arch: str
    arch_setting: dict
    deploy: bool
    norm_intermediate_features: bool
    num_tensors: int
    dropped: list[str]
    missing: list[str]

    def summary(self) -> str:
        """Human-readable report."""
        lines = [self._headline()]
        for name, keys in (('dropped', self.dropped), ('missing', self.missing)):
            if keys:
                shown = ', '.join(keys[:8]) + (f', ... ({len(keys) - 8} more)'
                                               if len(keys) > 8 else '')
                lines.append(f'  {name} {len(keys)} keys: {shown}')
        return '\n'.join(lines)

    def _headline(self) -> str:
        return (f'RepLKNet-{self.arch} backbone, {self._form()} form, stage norms: '
                f'{self.norm_intermediate_features}; wrote {self.num_tensors} tensors to '
                f'{self.dst}')

    def _form(self) -> str:
        return 'deploy (re-parameterized)' if self.deploy else 'training'


def convert_checkpoint(src: str | os.PathLike,
                       dst: str | os.PathLike,
                       arch: str | dict | None = None,
                       safetensors: bool = False) -> ConversionReport:
    """Writes the backbone weights of a released or mmpretrain-converted file, checked.

    Accepts the authors' ImageNet files (wrapped in 'model'/'state_dict', optional ``module.``
    prefix, classifier ``norm.*``/``head.*``), mmpretrain files (``backbone.`` prefix, ``head.fc``)
    and downstream checkpoints (the backbone part is kept). Non-backbone keys are dropped and
    reported; the rest must fit a RepLKNet, or a ``CheckpointMismatchError`` names what it
    looks like. A UniRepLKNet file (the authors' ImageNet or mmseg / mmdet checkpoints) goes to
    :func:`convert_unireplknet_state_dict`.

    Args:
        src (str | os.PathLike): Source checkpoint, read under the package's trust policy.
        dst (str | os.PathLike): Output path.
        arch (str | dict, optional): Check against this arch ('31B', '31L', 'XL' or a dict;
            'A' .. 'XL' for a UniRepLKNet); None uses the structure read off the file.
            Defaults to None.
        safetensors (bool): Write safetensors (needs the ``safetensors`` package) instead of a
            torch pickle. Defaults to False.

    Returns:
        ConversionReport: The arch found, tensors written, dropped and missing keys.
    """
    src = os.fspath(src)
    state_dict = unwrap_state_dict(load_checkpoint_file(src))
    if is_unireplknet_state_dict(state_dict):
        return convert_unireplknet_state_dict(state_dict, src, dst, arch, safetensors)
    if isinstance(arch, str) and arch not in RepLKNet.arch_settings:
        raise CheckpointMismatchError(f'{src} holds a RepLKNet; --arch {arch} is not one of '
                                      f'{list(RepLKNet.arch_settings)}')
    backbone, dropped = to_backbone_state_dict(state_dict)
    found, extra = infer_arch(backbone)
    model = RepLKNet(arch=found if arch is None else arch, drop_path_rate=0., **extra)
    report = match_state_dict(model, backbone, src)
    dropped = dropped + report.dropped
    weights = {key: backbone[key].contiguous() for key in report.loaded}
    name = arch_name(model.arch_setting)

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if safetensors:
        _save_safetensors(weights, dst, dict(arch=name, source=os.path.basename(src)))
    else:
        meta = dict(arch=name, arch_setting=model.arch_setting, source=os.path.basename(src),
                    **extra)
        torch.save(dict(meta=meta, state_dict=weights), dst)
    return ConversionReport(dst, name, model.arch_setting, extra['deploy'],
                            extra['norm_intermediate_features'], len(weights), dropped,
                            report.missing)


def _save_safetensors(weights: dict[str, torch.Tensor], dst: Path, metadata: dict) -> None:
    safetensors_torch = import_optional('safetensors.torch', 'writing safetensors',
                                        'pip install safetensors (or write a .pth without '
                                        '--safetensors)')
    safetensors_torch.save_file(weights, os.fspath(dst), metadata={'format': 'pt', **metadata})


@dataclasses.dataclass
class UniRepLKNetConversionReport(ConversionReport):
    """What :func:`convert_unireplknet_state_dict` found and wrote (``arch`` is 'A' .. 'XL' or
    'custom'; ``norm_intermediate_features`` is always False, UniRepLKNet has none)."""

    def _headline(self) -> str:
        return (f'UniRepLKNet-{self.arch} backbone, {self._form()} form; wrote '
                f'{self.num_tensors} tensors to {self.dst}')


def convert_unireplknet_state_dict(state_dict: Mapping[str, torch.Tensor], src: str,
                                   dst: str | os.PathLike, arch: str | dict | None = None,
                                   safetensors: bool = False) -> UniRepLKNetConversionReport:
    """Writes the UniRepLKNet backbone weights of an unwrapped state dict, checked.

    Args:
        state_dict (Mapping[str, torch.Tensor]): The file's weights (wrappers removed).
        src (str): Where they came from, for messages and the written meta.
        dst (str | os.PathLike): Output path.
        arch (str | dict, optional): Check against this arch ('A' .. 'XL' or a dict); None uses
            the structure read off the file. Defaults to None.
        safetensors (bool): Write safetensors instead of a torch pickle. Defaults to False.

    Returns:
        UniRepLKNetConversionReport: The arch found, tensors written, dropped and missing keys.
    """
    backbone, dropped = extract_backbone(state_dict, unireplknet_roots(), RELEASE_PREFIXES)
    found, extra = infer_unireplknet_arch(backbone)
    if isinstance(arch, str) and arch not in UniRepLKNet.arch_settings:
        raise CheckpointMismatchError(f'{src} holds a UniRepLKNet; --arch {arch} is not one of '
                                      f'{list(UniRepLKNet.arch_settings)}')
    model = UniRepLKNet(arch=found if arch is None else arch, **extra)
    report = match_unireplknet_state_dict(model, backbone, src)
    weights = {key: backbone[key].contiguous() for key in report.loaded}
    name = unireplknet_arch_name(model.arch_setting, UniRepLKNet.arch_settings)
    setting = {key: [list(v) for v in value] if key == 'kernel_sizes' else list(value)
               for key, value in model.arch_setting.items()}

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if safetensors:
        _save_safetensors(weights, dst, dict(arch=name, source=os.path.basename(src)))
    else:
        meta = dict(arch=name, arch_setting=setting, source=os.path.basename(src), **extra)
        torch.save(dict(meta=meta, state_dict=weights), dst)
    return UniRepLKNetConversionReport(dst, name, setting, extra['deploy'], False, len(weights),
                                       dropped + report.dropped, report.missing)

"""Layer-wise learning-rate decay for UniRepLKNet downstream training (the authors' rule).

UniRepLKNet's ADE20K and COCO configs train with AdamW whose learning rate shrinks towards the
input: each backbone parameter gets a *layer id* from its name and the learning rate
``lr * decay_rate ** (num_layers + 1 - layer_id)``; everything outside the backbone (the
``norm0..3`` output norms, neck and heads) gets id ``num_layers + 1`` and the full rate. Layer ids
with ``decay_type='layer_wise'`` (names are those of the whole model, ``backbone.`` first):

======================================  ==================
parameter                               layer id
======================================  ==================
``backbone.downsample_layers.0`` (stem)  0
``backbone.stages.0.*``                  1
``backbone.downsample_layers.1``,        2
``backbone.stages.1.*``
``backbone.downsample_layers.2``         3
``backbone.stages.2.j.*``                3 + j // 3
``backbone.downsample_layers.3``,        ``num_layers``
``backbone.stages.3.*``
anything else                            ``num_layers + 1``
======================================  ==================

With ``decay_type='stage_wise'`` the ids are 0 for the downsampling layers, ``i + 1`` for stage
``i`` and ``num_layers + 1`` for the rest. Weight decay is the optimizer's, except 0 for 1-D
parameters (norms, biases, layer scales) and every ``.bias``.

The rule counts stage-2 blocks in threes and does not look at the depth, so a ``num_layers``
smaller than ``3 + (depth of stage 2 - 1) // 3`` gives the last stage-2 blocks ids above the
heads' and learning rates above ``lr`` (the authors' S-22K ADE20K configs do this: ``num_layers``
9 for 27 blocks). That is their recipe, so it is kept, and logged as a warning.
"""
from __future__ import annotations

import logging
import re

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = ['DECAY_TYPES', 'UniRepLKNetLearningRateDecayOptimizerConstructor',
           'unireplknet_layer_id']

#: Values of ``paramwise_cfg['decay_type']``.
DECAY_TYPES = ('layer_wise', 'stage_wise')

_REQUIRED_KEYS = ('num_layers', 'decay_rate')
_OPTIONAL_KEYS = ('decay_type', 'dw_scale')
_BACKBONE_NAME = re.compile(r'backbone\.(downsample_layers|stages)\.(\d+)\.(?:(\d+)\.)?')


def unireplknet_layer_id(name: str, num_layers: int, decay_type: str = 'layer_wise') -> int:
    """The layer id the authors' rule gives a parameter (see the module docstring).

    Args:
        name (str): Parameter name in the whole model (``backbone.stages.2.7.dwconv.weight``).
        num_layers (int): ``paramwise_cfg['num_layers']``.
        decay_type (str): One of :data:`DECAY_TYPES`. Defaults to 'layer_wise'.

    Returns:
        int: The id; the learning-rate scale is ``decay_rate ** (num_layers + 1 - id)``.
    """
    if decay_type not in DECAY_TYPES:
        raise ValueError(f'decay_type must be one of {DECAY_TYPES}, got {decay_type!r}')
    match = _BACKBONE_NAME.match(name)
    if match is None:
        return num_layers + 1
    kind, stage, index = match.group(1), int(match.group(2)), match.group(3)
    if stage > 3 or (kind == 'stages' and index is None):
        raise ValueError(f'{name!r} is not a UniRepLKNet parameter name (4 stages, '
                         f'backbone.stages.<stage>.<block>.*): the rule needs its names')
    if decay_type == 'stage_wise':
        return 0 if kind == 'downsample_layers' else stage + 1
    if stage == 3:
        return num_layers
    if kind == 'downsample_layers':
        return (0, 2, 3)[stage]
    return (1, 2, 3 + int(index) // 3)[stage]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class UniRepLKNetLearningRateDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor with UniRepLKNet's layer-wise learning-rate decay.

    Config use (the authors' ADE20K UniRepLKNet-S recipe)::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
            constructor='UniRepLKNetLearningRateDecayOptimizerConstructor',
            paramwise_cfg=dict(num_layers=12, decay_rate=0.9, decay_type='layer_wise'))

    Parameters are grouped per (layer id, decayed or not); each group carries ``lr``,
    ``weight_decay``, ``lr_scale``, ``group_name`` and ``param_names``. mmengine's parameter
    schedulers scale every group's ``lr`` from its own initial value, so the ratios hold all
    through training. Frozen parameters (``requires_grad=False``) are left out.

    Args:
        optim_wrapper_cfg (dict): The optimizer wrapper config, with ``optimizer.lr`` and
            ``optimizer.weight_decay``.
        paramwise_cfg (dict): ``num_layers`` (int) and ``decay_rate`` (float), required;
            ``decay_type`` (one of :data:`DECAY_TYPES`, defaults to 'layer_wise') and
            ``dw_scale`` (float, an extra learning-rate factor for parameters whose name holds
            ``dwconv``; defaults to 1). Other keys are refused: the rule sets weight decay
            itself, so mmengine's ``norm_decay_mult`` and friends would silently do nothing.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        missing = [key for key in _REQUIRED_KEYS if key not in self.paramwise_cfg]
        if missing:
            raise ValueError(f'{type(self).__name__} needs paramwise_cfg keys {missing}: set '
                             f'them in optim_wrapper.paramwise_cfg')
        unknown = sorted(set(self.paramwise_cfg) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
        if unknown:
            raise ValueError(f'{type(self).__name__} does not use paramwise_cfg keys {unknown} '
                             f'(it knows {list(_REQUIRED_KEYS + _OPTIONAL_KEYS)}); remove them, '
                             f'e.g. with paramwise_cfg=dict(_delete_=True, ...) in a config '
                             f'that inherits them')
        decay_type = self.paramwise_cfg.get('decay_type', 'layer_wise')
        if decay_type not in DECAY_TYPES:
            raise ValueError(f'paramwise_cfg.decay_type must be one of {DECAY_TYPES}, '
                             f'got {decay_type!r}')
        if self.base_lr is None or self.base_wd is None:
            raise ValueError(f'{type(self).__name__} needs optimizer.lr and '
                             f'optimizer.weight_decay')

    def add_params(self, params: list[dict], module: nn.Module, **kwargs) -> None:
        """Appends one parameter group per (layer id, decayed or not) of ``module`` to ``params``.

        Args:
            params (list[dict]): Parameter groups, extended in place.
            module (nn.Module): The whole model (names must start with ``backbone.``).
        """
        num_layers = int(self.paramwise_cfg['num_layers'])
        decay_rate = float(self.paramwise_cfg['decay_rate'])
        decay_type = self.paramwise_cfg.get('decay_type', 'layer_wise')
        dw_scale = float(self.paramwise_cfg.get('dw_scale', 1.0))
        groups: dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            decays = not (param.ndim == 1 or name.endswith('.bias'))
            layer_id = unireplknet_layer_id(name, num_layers, decay_type)
            scale = decay_rate ** (num_layers + 1 - layer_id)
            group_name = f'layer_{layer_id}_{"decay" if decays else "no_decay"}'
            if dw_scale != 1 and 'dwconv' in name:
                scale *= dw_scale
                group_name += '_dwconv'
            if group_name not in groups:
                groups[group_name] = dict(
                    params=[], param_names=[], group_name=group_name, lr_scale=scale,
                    lr=self.base_lr * scale, weight_decay=self.base_wd if decays else 0.0)
            groups[group_name]['params'].append(param)
            groups[group_name]['param_names'].append(name)

        above = sorted({name for group in groups.values() if group['lr_scale'] > 1
                        for name in group['param_names']})
        if above:
            print_log(f'layer-wise lr decay: num_layers={num_layers} gives {len(above)} '
                      f'parameter tensors a learning rate above the heads\' (lr_scale > 1), from '
                      f'{above[0]} on; their layer ids exceed num_layers + 1',
                      logger='current', level=logging.WARNING)
        for group in groups.values():
            print_log(f'layer-wise lr decay: {group["group_name"]}: lr_scale '
                      f'{group["lr_scale"]:.4g}, weight_decay {group["weight_decay"]}, '
                      f'{len(group["params"])} tensors', logger='current')
        params.extend(groups.values())

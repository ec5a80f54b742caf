"""Parameters and FLOPs of a whole segmentor or detector, from its config.

Counting convention (mmengine.analysis, derived from fvcore): one multiply-add is one FLOP.
Convolutions, linear layers and matrix products count their multiply-adds (bias additions are
not counted); eval-mode BatchNorm counts 2 per element (1 without affine parameters), bilinear
upsampling 4 per output element, adaptive average pooling 1 per input element; activations,
residual additions and RoIAlign count 0. This is the convention behind the FLOPs the RepLKNet
paper reports (mmcv's counter, also multiply-adds), up to those small per-element terms.

What runs is the inference path the paper measured, as the config's task adapter defines it
(:meth:`~mmreplk.tasks.TaskAdapter.inference_path`):

* segmentors: backbone, neck and decode head on one image (the auxiliary head is a training
  loss; it is excluded from FLOPs and from ``params``, and listed separately);
* two-stage detectors: backbone, neck, the RPN head's convolutions, and every box-head stage on
  :data:`~mmreplk.tasks.detection.NUM_PROPOSALS` fixed proposals and every mask-head stage on
  the first :data:`~mmreplk.tasks.detection.NUM_MASK_ROIS` of them (the rule of mmdet 2.x's
  ``forward_dummy``, so numbers do not depend on how many boxes a random-weight RPN keeps).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config

from mmreplk.apis import load_config
from mmreplk.models import reparameterize
from mmreplk.tasks import task_adapter

__all__ = ['Complexity', 'get_model_complexity']


@dataclasses.dataclass
class Complexity:
    """Result of :func:`get_model_complexity`.

    Args:
        flops (int): Multiply-adds of the inference path.
        params (int): Parameters of the modules on the inference path.
        input_shape (tuple[int, int]): (H, W) of the image.
        components (dict[str, tuple[int, int]]): (params, FLOPs) per top-level module, in
            model order; modules off the inference path have 0 FLOPs, and 'other' holds ops
            that run outside every top-level module, if any.
        excluded (tuple[str, ...]): Top-level modules left out of ``params`` (training-only).
        unsupported_ops (dict[str, int]): Traced ops with no FLOP rule (counted as 0), with
            how often they ran.
    """
    flops: int
    params: int
    input_shape: tuple[int, int]
    components: dict[str, tuple[int, int]]
    excluded: tuple[str, ...] = ()
    unsupported_ops: dict[str, int] = dataclasses.field(default_factory=dict)

    def table(self) -> str:
        """A text table of params and FLOPs per component and in total."""
        rows = [('module', 'params (M)', 'FLOPs (G)')]
        for name, (params, flops) in self.components.items():
            note = ' (not counted)' if name in self.excluded else ''
            rows.append((name + note, f'{params / 1e6:.2f}', f'{flops / 1e9:.1f}'))
        rows.append(('total', f'{self.params / 1e6:.2f}', f'{self.flops / 1e9:.1f}'))
        width = max(len(row[0]) for row in rows)
        return '\n'.join(f'{a:<{width}}  {b:>10}  {c:>10}' for a, b, c in rows)


def get_model_complexity(config: str | os.PathLike | Config,
                         shape: Sequence[int] = (512, 512),
                         deploy: bool = False,
                         device: str | torch.device = 'cpu') -> Complexity:
    """Counts parameters and FLOPs of the model a config builds (see the module docstring).

    Args:
        config (str | os.PathLike | Config): A segmentation or detection config.
        shape (Sequence[int]): Input image (H, W). Defaults to (512, 512).
        deploy (bool): Count the re-parameterized form (the backbone folded) instead of the
            training form. Defaults to False.
        device (str | torch.device): Where to run the traced forward. Defaults to 'cpu'.

    Returns:
        Complexity: Totals and a per-component breakdown.
    """
    cfg = load_config(config)
    task = task_adapter(cfg)
    model = task.build_model(cfg, device=device)
    if deploy:
        reparameterize(model)
    height, width = shape
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    image = image.to(device)
    traced, prefix, excluded = task.inference_path(model, shape)

    analyzer = FlopAnalyzer(traced, (image,))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        by_module = analyzer.by_module()
    components = {}
    for name, child in model.named_children():
        params = sum(p.numel() for p in child.parameters())
        if params or by_module.get(prefix + name):
            components[name] = (params, by_module.get(prefix + name, 0))
    outside = by_module[''] - sum(flops for _, flops in components.values())
    if outside:
        components['other'] = (0, outside)
    params = sum(p for name, (p, _) in components.items() if name not in excluded)
    return Complexity(by_module[''], params, (height, width), components, excluded,
                      dict(analyzer.unsupported_ops()))

"""Re-parameterizing a trained segmentor or detector checkpoint into its deploy form."""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmreplk.apis import load_config
from mmreplk.models import is_folded, reparameterize
from mmreplk.tasks import max_differences, read_image, task_adapter
from mmreplk.utils import ConfigError, load_weights, read_state_dict


@dataclasses.dataclass
class ReparamResult:
    """What :func:`reparameterize_checkpoint` wrote and, if asked, how well the forms agree.

    Args:
        out (Path): The deploy-form checkpoint.
        num_tensors (int): Tensors in it.
        num_tensors_before (int): Tensors in the source checkpoint.
        max_abs_diff (float, optional): Max |deploy - training| over the compared outputs.
        max_abs_output (float, optional): Max |training| over the same outputs.
    """
    out: Path
    num_tensors: int
    num_tensors_before: int
    max_abs_diff: float | None = None
    max_abs_output: float | None = None

    @property
    def relative_diff(self) -> float | None:
        """``max_abs_diff / max_abs_output`` (None without verification)."""
        if self.max_abs_diff is None:
            return None
        return self.max_abs_diff / max(self.max_abs_output, torch.finfo(torch.float32).tiny)


def reparameterize_checkpoint(config: str | os.PathLike | Config,
                              checkpoint: str | os.PathLike,
                              out: str | os.PathLike,
                              verify_image: str | os.PathLike | np.ndarray | None = None
                              ) -> ReparamResult:
    """Folds a trained model's checkpoint so it loads with ``model.backbone.deploy=True``.

    The model is built from ``config`` in training form and loaded strictly from
    ``checkpoint``; :func:`mmreplk.reparameterize` folds every re-parameterizable module, and
    the result is written as ``{'meta', 'state_dict'}`` (the source's ``meta``, e.g. the
    dataset classes, is kept). The written file is then loaded strictly into the model the
    config builds with ``model.backbone.deploy=True``, so a file that would not load is never
    reported as a success.

    Args:
        config (str | os.PathLike | Config): The config the checkpoint was trained with.
        checkpoint (str | os.PathLike): Training-form checkpoint (runner-written or a plain
            state dict), read under the package's trust policy.
        out (str | os.PathLike): Where to write the deploy-form checkpoint.
        verify_image (str | os.PathLike | np.ndarray, optional): An image file or a BGR uint8
            array; when given, both forms run on it and the result holds their difference
            (what the task adapter's ``comparable_outputs`` names: segmentors' logits,
            detectors' backbone + neck features). Defaults to None.

    Returns:
        ReparamResult: The output path and, with ``verify_image``, the differences.
    """
    logger = MMLogger.get_current_instance()
    cfg = load_config(config)
    task = task_adapter(cfg)
    image = verify_image
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)

    state_dict, meta = read_state_dict(checkpoint)
    if is_folded(state_dict):
        raise ConfigError(f'{checkpoint} is already re-parameterized (it holds folded '
                          'lkb_reparam or pwconv2 bias weights); load it with --cfg-options '
                          'model.backbone.deploy=True')
    model = task.build_model(cfg)
    load_weights(model, state_dict, 'exact', os.fspath(checkpoint))
    reference = copy.deepcopy(model) if image is not None else None

    folded = reparameterize(model).state_dict()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta.update(reparameterized=True, source_checkpoint=os.path.basename(os.fspath(checkpoint)))
    torch.save(dict(meta=meta, state_dict=folded), out)
    logger.info(f'folded {len(state_dict)} tensors into {len(folded)}; wrote {out}')

    # The written file must load, exactly, into the deploy form the config builds.
    deployed = task.build_model(cfg, out, deploy=True)
    result = ReparamResult(out, len(folded), len(state_dict))
    if image is not None:
        inputs, samples = task.prepare_batch(deployed, image)
        expected = task.comparable_outputs(reference, inputs, samples)
        actual = task.comparable_outputs(deployed, inputs, samples)
        result.max_abs_diff, result.max_abs_output = max_differences(actual, expected)
    return result

"""Analysis: parameters and FLOPs, effective receptive fields, speed benchmarks, training curves.

Names are imported on first use (PEP 562): the GPU benchmark modules need only the op and the
backbones, and must import on a GPU box that lacks mmseg, mmdet and pycocotools, which the
model-level modules (``benchmark``, ``erf``, ``flops``) reach through :mod:`mmreplk.tasks`.
"""
import importlib

#: Public name -> the submodule defining it.
_EXPORTS = {
    **dict.fromkeys(('BACKBONE_FAMILIES', 'BACKBONE_FORMS', 'BackboneBenchmark', 'Timing',
                     'benchmark_backbone', 'benchmark_model', 'build_backbone_forms',
                     'default_device', 'profile_forward', 'time_round_robin'), 'benchmark'),
    **dict.fromkeys(('BOOKKEEPING_KEYS', 'TrainingCurves', 'load_training_curves',
                     'plot_training_curves', 'scalar_logs'), 'curves'),
    **dict.fromkeys(('THRESHOLDS', 'ERFResult', 'compute_erf', 'contribution_map',
                     'format_area_ratios', 'high_contribution_area_ratios',
                     'load_backbone_checkpoint', 'normalize_erf', 'save_erf_heatmap'), 'erf'),
    **dict.fromkeys(('Complexity', 'get_model_complexity'), 'flops'),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{_EXPORTS[name]}', __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

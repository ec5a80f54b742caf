"""Analysis: parameters and FLOPs, effective receptive fields, speed benchmarks, training curves."""
from .benchmark import (BACKBONE_FORMS, BackboneBenchmark, Timing, benchmark_backbone,
                        benchmark_model, build_backbone_forms, default_device, profile_forward,
                        time_round_robin)
from .curves import (BOOKKEEPING_KEYS, TrainingCurves, load_training_curves,
                     plot_training_curves, scalar_logs)
from .erf import (THRESHOLDS, ERFResult, compute_erf, contribution_map, format_area_ratios,
                  high_contribution_area_ratios, load_backbone_checkpoint, normalize_erf,
                  save_erf_heatmap)
from .flops import NUM_MASK_ROIS, NUM_PROPOSALS, Complexity, fixed_proposals, get_model_complexity

__all__ = [
    'BACKBONE_FORMS', 'BOOKKEEPING_KEYS', 'NUM_MASK_ROIS', 'NUM_PROPOSALS', 'THRESHOLDS',
    'BackboneBenchmark', 'Complexity', 'ERFResult', 'Timing', 'TrainingCurves',
    'benchmark_backbone', 'benchmark_model', 'build_backbone_forms', 'compute_erf',
    'contribution_map', 'default_device', 'fixed_proposals', 'format_area_ratios',
    'get_model_complexity', 'high_contribution_area_ratios', 'load_backbone_checkpoint',
    'load_training_curves', 'normalize_erf', 'plot_training_curves', 'profile_forward',
    'save_erf_heatmap', 'scalar_logs', 'time_round_robin'
]

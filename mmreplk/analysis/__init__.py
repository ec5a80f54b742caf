"""Analysis: parameters and FLOPs, effective receptive fields, and speed benchmarks."""
from .benchmark import (BACKBONE_FORMS, BackboneBenchmark, Timing, benchmark_backbone,
                        benchmark_model, build_backbone_forms, default_device, profile_forward,
                        time_round_robin)
from .erf import (THRESHOLDS, ERFResult, compute_erf, contribution_map, format_area_ratios,
                  high_contribution_area_ratios, load_backbone_checkpoint, normalize_erf,
                  save_erf_heatmap)
from .flops import Complexity, get_model_complexity

__all__ = [
    'BACKBONE_FORMS', 'THRESHOLDS', 'BackboneBenchmark', 'Complexity', 'ERFResult', 'Timing',
    'benchmark_backbone', 'benchmark_model', 'build_backbone_forms', 'compute_erf',
    'contribution_map', 'default_device', 'format_area_ratios', 'get_model_complexity',
    'high_contribution_area_ratios', 'load_backbone_checkpoint', 'normalize_erf',
    'profile_forward', 'save_erf_heatmap', 'time_round_robin'
]

"""Demo data and dataset checks (no mmseg import here; see ``shapes_dataset``)."""
from .bad_samples import (BadSamplesError, SkipBadSamples, guard_eval_dataset,
                          guard_train_dataset)
from .demo import DEMO_CLASSES, DEMO_PALETTE, generate_demo_dataset, majority_class_miou, make_sample
from .demo_coco import DEMO_COCO_CLASSES, DemoCocoFiles, generate_demo_coco
from .layout import DATASET_LAYOUTS, DatasetLayout, DatasetLayoutError, check_dataset_layout

__all__ = [
    'BadSamplesError', 'SkipBadSamples', 'guard_eval_dataset', 'guard_train_dataset',
    'DATASET_LAYOUTS', 'DEMO_CLASSES', 'DEMO_PALETTE', 'DatasetLayout', 'DatasetLayoutError',
    'check_dataset_layout', 'generate_demo_dataset', 'majority_class_miou', 'make_sample',
    'DEMO_COCO_CLASSES', 'DemoCocoFiles', 'generate_demo_coco'
]

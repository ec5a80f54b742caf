"""Model I/O and task adapters: config -> model (+ checkpoint) -> batch -> outputs, per task.

:func:`task_adapter` picks the :class:`TaskAdapter` registered for a config's ``default_scope``
(:mod:`.segmentation` for 'mmseg', :mod:`.detection` for 'mmdet'); nothing outside this package
asks which task a config is. mmseg and mmdet are imported only when a task's model is used.
"""
from .base import (DEPLOY_FROM_CHECKPOINT, TASK_ADAPTERS, InferencePath, KnownWarning, Predictor,
                   TaskAdapter, known_warnings_filtered, task_adapter)
from .images import MAX_IMAGE_PIXELS, ImageReadError, read_image, synthetic_image
from .model_io import InputNormalization, build_model, input_normalization, max_differences
# Registration order is the order in which messages list the tasks: segmentation first.
from .segmentation import SegmentationTask, SegmentorForExport, SegPredictor  # isort: skip
from .detection import DetectionTask, DetPredictor  # isort: skip

__all__ = [
    'DEPLOY_FROM_CHECKPOINT', 'MAX_IMAGE_PIXELS', 'TASK_ADAPTERS', 'DetPredictor', 'DetectionTask',
    'ImageReadError', 'InferencePath', 'InputNormalization', 'KnownWarning', 'Predictor',
    'SegPredictor', 'SegmentationTask', 'SegmentorForExport', 'TaskAdapter', 'build_model',
    'input_normalization', 'known_warnings_filtered', 'max_differences', 'read_image',
    'synthetic_image', 'task_adapter'
]

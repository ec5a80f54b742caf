"""Deployment: re-parameterized checkpoints, backbone checkpoint conversion and ONNX export."""
from .convert import ConversionReport, arch_name, convert_checkpoint, infer_arch
from .model_io import (build_model, comparable_outputs, is_folded, load_state_dict_strict,
                       max_differences, model_scope, prepare_batch, read_state_dict,
                       synthetic_image)
from .onnx_export import (ExportMismatchError, ExportResult, MatmulAdaptiveAvgPool2d,
                          SegmentorForExport, export_onnx, make_pooling_exportable,
                          run_onnxruntime)
from .reparam import ReparamResult, reparameterize_checkpoint

__all__ = [
    'ConversionReport', 'ExportMismatchError', 'ExportResult', 'MatmulAdaptiveAvgPool2d',
    'ReparamResult', 'SegmentorForExport', 'arch_name', 'build_model', 'comparable_outputs',
    'convert_checkpoint', 'export_onnx', 'infer_arch', 'is_folded', 'load_state_dict_strict',
    'make_pooling_exportable', 'max_differences', 'model_scope', 'prepare_batch',
    'read_state_dict', 'reparameterize_checkpoint', 'run_onnxruntime', 'synthetic_image'
]

"""Deployment: re-parameterized checkpoints, backbone checkpoint conversion and ONNX export."""
from .convert import (ConversionReport, UniRepLKNetConversionReport, convert_checkpoint,
                      convert_unireplknet_state_dict)
from .onnx_export import (DEFAULT_RTOL, ExportMismatchError, ExportResult, MatmulAdaptiveAvgPool2d,
                          export_onnx, make_pooling_exportable, run_onnxruntime)
from .reparam import ReparamResult, reparameterize_checkpoint

__all__ = [
    'DEFAULT_RTOL', 'ConversionReport', 'ExportMismatchError', 'ExportResult',
    'MatmulAdaptiveAvgPool2d', 'ReparamResult', 'UniRepLKNetConversionReport',
    'convert_checkpoint', 'convert_unireplknet_state_dict', 'export_onnx',
    'make_pooling_exportable', 'reparameterize_checkpoint', 'run_onnxruntime'
]

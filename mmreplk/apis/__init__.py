"""What the tools call: config/argument helpers, train/test entry points, folder inference.

Task predictors (``seg_inference``, ``det_inference``) are imported on demand by
:func:`build_predictor`, so importing this package pulls in neither mmseg nor mmdet.
"""
from .config import (add_runner_args, add_trust_arg, checkpoint_trust, load_config,
                     merge_test_args, merge_train_args, parse_runner_args)
from .errors import USER_ERRORS, ToolError, exit_on_user_error
from .inference import (PREDICTORS, ImageReadError, InferenceSummary, Predictor, build_predictor,
                        infer_folder, read_image)
from .runner import build_runner, check_amp, prepare_distributed, resolve_pretrained, test, train

__all__ = [
    'PREDICTORS', 'USER_ERRORS', 'ImageReadError', 'InferenceSummary', 'Predictor', 'ToolError',
    'add_runner_args', 'add_trust_arg', 'build_predictor', 'build_runner', 'check_amp',
    'checkpoint_trust', 'exit_on_user_error',
    'infer_folder', 'load_config', 'merge_test_args', 'merge_train_args', 'parse_runner_args',
    'prepare_distributed', 'read_image', 'resolve_pretrained', 'test', 'train'
]

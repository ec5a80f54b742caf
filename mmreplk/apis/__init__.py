"""What the tools call: the command-line layer, config loading and editing, train/test entry
points and folder inference.

Everything task-specific is asked of the config's task adapter (:mod:`mmreplk.tasks`), so
importing this package pulls in neither mmseg nor mmdet.
"""
from mmreplk.tasks import MAX_IMAGE_PIXELS, ImageReadError, Predictor, read_image
from mmreplk.utils import ToolError, UserError
from .cli import (add_config_args, add_runner_args, add_trust_arg, checkpoint_trust,
                  parse_runner_args)
from .config import check_option_keys, load_config, merge_test_args, merge_train_args
from .errors import USER_ERRORS, exit_on_user_error
from .inference import InferenceSummary, build_predictor, infer_folder
from .runner import build_runner, check_amp, prepare_distributed, resolve_pretrained, test, train

__all__ = [
    'MAX_IMAGE_PIXELS', 'USER_ERRORS', 'ImageReadError', 'InferenceSummary', 'Predictor',
    'ToolError', 'UserError', 'add_config_args', 'add_runner_args', 'add_trust_arg',
    'build_predictor', 'build_runner', 'check_amp', 'check_option_keys', 'checkpoint_trust',
    'exit_on_user_error', 'infer_folder', 'load_config', 'merge_test_args', 'merge_train_args',
    'parse_runner_args', 'prepare_distributed', 'read_image', 'resolve_pretrained', 'test',
    'train'
]

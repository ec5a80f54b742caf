"""Errors a user makes, through the tools' entry functions: one line each, naming the problem
and the fix, the same class and message in every tool, without the logger's code location."""
import importlib
import inspect
import io
import logging
import pkgutil
import uuid
from pathlib import Path

import pytest
import torch
from helpers import load_tool
from mmengine.logging import MMLogger

import mmreplk
from mmreplk.apis import USER_ERRORS, exit_on_user_error
from mmreplk.datasets import generate_demo_dataset
from mmreplk.utils import MissingFileError, UserError

ROOT = Path(__file__).parents[2]
SEG_CONFIG = ROOT / 'tests' / 'data' / 'configs' / 'tiny_upernet_replknet.py'
DEMO_CONFIG = ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'


@pytest.fixture
def console():
    """A fresh current logger whose console handler (mmengine's, with its formatter) writes into
    a buffer; returns a reader of the ERROR messages and of the console text."""
    logger = MMLogger.get_instance(f'test_user_errors_{uuid.uuid4().hex}')
    stream_handler, = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    buffer = io.StringIO()
    stream_handler.setStream(buffer)
    records = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    logger.addHandler(handler)
    yield lambda: ([record.getMessage() for record in records], buffer.getvalue())
    logger.removeHandler(handler)


def _exits_with_one_error(tool: str, argv: list[str], console) -> str:
    with pytest.raises(SystemExit) as exit_status:
        load_tool(tool).main(argv)
    assert exit_status.value.code == 1
    messages, printed = console()
    assert len(messages) == 1, messages
    line, = [text for text in printed.splitlines() if 'ERROR' in text]
    # The message, not where in our code the logger was called.
    assert 'errors.py' not in line and 'exit_on_user_error' not in line
    assert line.endswith(messages[0])
    return messages[0]


@pytest.mark.parametrize('tool, argv', [
    ('train.py', [str(SEG_CONFIG)]),
    ('analysis/get_flops.py', [str(SEG_CONFIG), '--shape', '32', '32']),
])
def test_a_misspelt_config_key_names_the_key_the_class_and_the_fix(tool, argv, console,
                                                                   tmp_path):
    argv = [*argv, '--cfg-options', 'model.backbone.archh=31B']
    if tool == 'train.py':
        argv += ['--work-dir', str(tmp_path)]
    message = _exits_with_one_error(tool, argv, console)
    assert message == ("ConfigError: unknown config key model.backbone.archh: RepLKNet (reached "
                       "by model.backbone) takes no argument 'archh'; did you mean `arch`?")
    assert not list(tmp_path.iterdir())  # refused before anything was built or written


def test_a_misspelt_key_higher_up_and_a_correct_one(console):
    tool = load_tool('analysis/get_flops.py')
    with pytest.raises(SystemExit):
        tool.main([str(SEG_CONFIG), '--cfg-options', 'model.decode_head.num_clases=3'])
    messages, _ = console()
    assert messages == ["ConfigError: unknown config key model.decode_head.num_clases: UPerHead "
                        "(reached by model.decode_head) takes no argument 'num_clases'; did you "
                        "mean `num_classes`?"]
    # Keys the class takes through **kwargs of its base, and keys of *_cfg dicts (mmcv's layer
    # builders take more than the layer's arguments), are accepted.
    assert tool.main([str(SEG_CONFIG), '--shape', '32', '32', '--cfg-options',
                      'model.decode_head.num_classes=3',
                      'model.backbone.norm_cfg.requires_grad=False']) == 0


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp('demo_ade'), 2, 2, 32)


@pytest.mark.parametrize('tool, argv', [
    ('test.py', [str(DEMO_CONFIG), '{ckpt}', '--work-dir', '{tmp}', '--cfg-options',
                 'test_dataloader.dataset.data_root={data}']),
    ('infer.py', [str(DEMO_CONFIG), '{ckpt}', '{data}', '--out-dir', '{tmp}/out']),
    ('reparameterize.py', [str(SEG_CONFIG), '{ckpt}', '{tmp}/deploy.pth']),
    ('export_onnx.py', [str(SEG_CONFIG), '{ckpt}', '{tmp}/m.onnx', '--no-check']),
    ('convert_checkpoint.py', ['{ckpt}', '{tmp}/backbone.pth']),
    ('analysis/visualize_erf.py', [str(SEG_CONFIG), '{ckpt}', '{data}', '--out', '{tmp}/e.png']),
])
def test_a_missing_checkpoint_is_one_error_in_every_tool(tool, argv, console, tmp_path,
                                                         demo_data):
    checkpoint = tmp_path / 'nope.pth'
    argv = [arg.format(ckpt=checkpoint, tmp=tmp_path, data=demo_data) for arg in argv]
    message = _exits_with_one_error(tool, argv, console)
    assert message == f'MissingFileError: checkpoint file not found: {checkpoint}'


def test_user_errors_have_one_root():
    assert USER_ERRORS == (UserError,)
    assert issubclass(MissingFileError, FileNotFoundError)
    # mmengine's registry re-raises a constructor's error as type(err)(message).
    error = MissingFileError('checkpoint file', 'a.pth')
    assert str(type(error)(f'class `X` in x.py: {error}')) == ('class `X` in x.py: checkpoint '
                                                               'file not found: a.pth')
    defined = set()
    for info in pkgutil.walk_packages(mmreplk.__path__, 'mmreplk.'):
        module = importlib.import_module(info.name)
        defined.update(obj for _, obj in inspect.getmembers(module, inspect.isclass)
                       if issubclass(obj, Exception) and obj.__module__.startswith('mmreplk.'))
    # Errors of the package that are not the user's to fix: a failed write is reported by the
    # checkpoint code that catches it (CheckpointSaveError, a UserError).
    # NotAChoiceFile is caught inside the dispatcher's cache, which warns and measures instead.
    internal = {'AtomicWriteError', 'NotAChoiceFile'}
    outside = sorted(cls.__name__ for cls in defined
                     if not issubclass(cls, UserError) and cls.__name__ not in internal)
    assert not outside, f'user-facing errors must derive from UserError: {outside}'
    assert len(defined) >= 10  # the walk really found the package's errors


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError), exit_on_user_error():
        raise KeyError('a bug')
    with pytest.raises(FileNotFoundError), exit_on_user_error():
        torch.load('/nonexistent/file.pth')

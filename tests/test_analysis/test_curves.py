"""Training curves of a work dir, on logs that mmengine's own LocalVisBackend writes."""
import cv2
import pytest
from helpers import load_tool
from mmengine.visualization import LocalVisBackend

from mmreplk.analysis import load_training_curves, plot_training_curves
from mmreplk.utils import ToolError


def _write_run(work_dir, timestamp, records):
    """One run's scalars, written the way LoggerHook writes them (step = iteration or epoch)."""
    backend = LocalVisBackend(save_dir=str(work_dir / timestamp / 'vis_data'))
    for record in records:
        record = dict(record)
        step = record.pop('step')
        backend.add_scalars(record, step=step, file_path=f'{timestamp}.json')


def _train(iteration, loss, **extra):
    return dict(lr=1e-3, time=0.2, data_time=0.01, loss=loss, iter=iteration, step=iteration,
                **extra)


@pytest.fixture
def resumed_work_dir(tmp_path):
    """An iteration-based run killed after iteration 30 (checkpoint at 20), resumed to 40."""
    _write_run(tmp_path, '20260101_000000', [
        _train(10, 3.0), _train(20, 2.0), dict(mIoU=40.0, aAcc=80.0, time=0.5, step=20),
        _train(30, 1.5)])
    _write_run(tmp_path, '20260101_010000', [
        _train(30, 1.0), _train(40, 0.8), dict(mIoU=50.0, aAcc=85.0, time=0.5, step=40)])
    return tmp_path


def test_runs_join_and_the_resumed_run_replaces_the_lost_iterations(resumed_work_dir):
    curves = load_training_curves(resumed_work_dir)
    assert [log.parent.parent.name for log in curves.logs] == ['20260101_000000',
                                                               '20260101_010000']
    assert curves.points('loss') == ([10, 20, 30, 40], [3.0, 2.0, 1.0, 0.8])
    assert curves.points('mIoU') == ([20, 40], [40.0, 50.0])
    assert curves.default_keys() == ['loss', 'mIoU', 'aAcc']
    # The validation loop's own time is not training's time at that iteration.
    assert curves.points('time')[1] == [0.2] * 4


def test_epoch_based_validation_sits_at_the_epochs_last_iteration(tmp_path):
    _write_run(tmp_path, '20260101_000000', [
        _train(5, 2.0, epoch=1), _train(10, 1.5, epoch=1), dict(**{'coco/bbox_mAP': 0.1}, step=1),
        _train(15, 1.2, epoch=2), _train(20, 1.0, epoch=2), dict(**{'coco/bbox_mAP': 0.3}, step=2)])
    curves = load_training_curves(tmp_path)
    assert curves.points('coco/bbox_mAP') == ([10, 20], [0.1, 0.3])
    assert curves.default_keys() == ['loss', 'coco/bbox_mAP']


def test_plot_writes_an_image_with_one_panel_per_key(resumed_work_dir, tmp_path):
    curves = load_training_curves(resumed_work_dir)
    one = plot_training_curves(curves, tmp_path / 'one.png', keys=['loss'])
    three = plot_training_curves(curves, tmp_path / 'three.png')
    one_image, three_image = cv2.imread(str(one)), cv2.imread(str(three))
    assert one_image is not None and three_image is not None
    # Three panels side by side: about three times as wide as one.
    assert three_image.shape[1] > 2.5 * one_image.shape[1]


def test_errors_name_the_problem(tmp_path, resumed_work_dir):
    with pytest.raises(ToolError, match='work dir not found'):
        load_training_curves(tmp_path / 'missing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ToolError, match='no training log .* expected <timestamp>/vis_data/scalars'):
        load_training_curves(tmp_path / 'empty')
    with pytest.raises(ToolError, match=r"no scalar 'mIoUU'.*'mIoU'"):
        load_training_curves(resumed_work_dir).points('mIoUU')


def test_tool_writes_the_default_file_and_exits_1_on_a_user_error(resumed_work_dir, tmp_path,
                                                                   capsys):
    tool = load_tool('analysis/plot_curves.py')
    assert tool.main([str(resumed_work_dir)]) == 0
    assert (resumed_work_dir / 'curves.png').is_file()
    assert 'loss, mIoU, aAcc over 2 run(s)' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(tmp_path / 'nothing_here')])
    assert exit_info.value.code == 1

import pytest

from mmreplk.datasets import DATASET_LAYOUTS, DatasetLayoutError, check_dataset_layout


def _ade_cfg(root, split='train', **wrap):
    dataset = dict(type='ADE20KDataset', data_root=str(root),
                   data_prefix=dict(img_path='images/training',
                                    seg_map_path='annotations/training'))
    if wrap:
        dataset = dict(type='RepeatDataset', times=2, dataset=dataset)
    return {f'{split}_dataloader': dict(batch_size=2, dataset=dataset)}


def _make_ade(root):
    for sub in ('images/training', 'annotations/training'):
        (root / sub).mkdir(parents=True)
        (root / sub / 'a.x').write_bytes(b'x')


def test_complete_layout_passes(tmp_path):
    _make_ade(tmp_path)
    check_dataset_layout(_ade_cfg(tmp_path))


def test_missing_root_names_path_layout_and_preparation(tmp_path):
    root = tmp_path / 'ADEChallengeData2016'
    with pytest.raises(DatasetLayoutError) as info:
        check_dataset_layout(_ade_cfg(root))
    message = str(info.value)
    assert f'{root} does not exist' in message
    assert 'images/training/*.jpg' in message and 'annotations/validation/*.png' in message
    assert 'ADEChallengeData2016.zip' in message and 'data_root' in message


@pytest.mark.parametrize('broken,problem', [('images/training', 'does not exist'),
                                            ('annotations/training', 'is empty')])
def test_incomplete_layout_names_the_first_bad_folder(tmp_path, broken, problem):
    _make_ade(tmp_path)
    if problem == 'is empty':
        (tmp_path / broken / 'a.x').unlink()
    else:
        (tmp_path / broken / 'a.x').unlink()
        (tmp_path / broken).rmdir()
    with pytest.raises(DatasetLayoutError, match=f'{tmp_path / broken} {problem}'):
        check_dataset_layout(_ade_cfg(tmp_path, wrap=True))


def test_only_requested_splits_and_known_types_are_checked(tmp_path):
    missing = tmp_path / 'nowhere'
    check_dataset_layout(_ade_cfg(missing, split='test'), splits=('train', 'val'))
    cfg = _ade_cfg(missing)
    cfg['train_dataloader']['dataset']['type'] = 'SomeOtherDataset'
    check_dataset_layout(cfg)


def test_cityscapes_hint_points_at_the_converter(tmp_path):
    cfg = {'val_dataloader': dict(dataset=dict(
        type='CityscapesDataset', data_root=str(tmp_path / 'cs'),
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val')))}
    with pytest.raises(DatasetLayoutError, match=r'cityscapes\.py data/cityscapes'):
        check_dataset_layout(cfg)
    assert {'ADE20KDataset', 'CityscapesDataset'} <= set(DATASET_LAYOUTS)

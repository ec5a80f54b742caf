"""tools/generate_demo_data.py writes either demo dataset with the generators' own files."""
import pytest
from helpers import load_tool


@pytest.mark.parametrize('layout,files', [
    ('ade20k', ['annotations/training/demo_00000.png', 'images/validation/demo_00000.jpg']),
    ('coco', ['annotations/instances_train2017.json', 'val2017/000001.png']),
])
def test_writes_the_requested_layout(layout, files, tmp_path, capsys):
    tool = load_tool('generate_demo_data.py')
    root = tmp_path / layout
    assert tool.main([layout, str(root), '--num-train', '2', '--num-val', '1', '--size', '32']) == 0
    assert all((root / name).is_file() for name in files)
    assert '2 training, 1 validation images of 32x32' in capsys.readouterr().out


def test_defaults_follow_the_layout():
    tool = load_tool('generate_demo_data.py')
    ade = tool.parse_args(['ade20k', 'x'])
    coco = tool.parse_args(['coco', 'x'])
    assert (ade.num_train, ade.num_val) == (240, 40) and (coco.num_train, coco.num_val) == (200, 50)
    with pytest.raises(SystemExit):
        tool.parse_args(['coco', 'x', '--num-val', '0'])

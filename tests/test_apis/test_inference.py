import cv2
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmreplk.apis import ImageReadError, Predictor, build_predictor, infer_folder, read_image
from mmreplk.tasks import TASK_ADAPTERS, TaskAdapter


def _rgb(h=20, w=30):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_image_normalises_channels_and_depth(tmp_path):
    rgb = _rgb()
    cv2.imwrite(str(tmp_path / 'c.png'), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / 'c.png'), rgb)

    cv2.imwrite(str(tmp_path / 'g.png'), rgb[..., 0])
    gray = read_image(tmp_path / 'g.png')
    assert gray.shape == (20, 30, 3) and (gray == rgb[..., :1]).all()

    bgra = np.dstack([rgb, np.full((20, 30), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / 'a.png'), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / 'a.png'), rgb)

    deep = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / 'd.png'), deep)
    decoded = read_image(tmp_path / 'd.png')
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, rgb)

    Image.fromarray(rgb[..., ::-1]).save(tmp_path / 'p.gif')
    assert read_image(tmp_path / 'p.gif').shape == (20, 30, 3)


@pytest.mark.parametrize('name,content,reason', [
    ('empty.jpg', b'', 'empty file'),
    ('notes.txt', b'not an image at all', 'not an image'),
    ('truncated.jpg', None, 'corrupt or truncated'),
])
def test_read_image_rejects_bad_files_with_reason(tmp_path, name, content, reason):
    if content is None:
        ok, data = cv2.imencode('.jpg', _rgb(64, 64))
        content = data.tobytes()[:len(data) // 2]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=reason):
        read_image(tmp_path / name)


class CountingPredictor(Predictor):
    """Writes the mean colour of each image; remembers batch sizes."""
    batches: list = []

    def predict(self, images):
        assert all(i.dtype == np.uint8 and i.ndim == 3 and i.shape[2] == 3 for i in images)
        CountingPredictor.batches.append(len(images))
        return [image.mean() for image in images]

    def save(self, image, result, out_stem):
        path = out_stem.with_name(out_stem.name + '_mean.txt')
        path.write_text(f'{result:.3f}')
        return [path]


class CountingTask(TaskAdapter):
    """A task whose only capability is folder inference with :class:`CountingPredictor`."""

    def build_predictor(self, cfg, checkpoint, device):
        return CountingPredictor(cfg, checkpoint, device)


@pytest.fixture
def fake_scope(monkeypatch, tmp_path):
    monkeypatch.setitem(TASK_ADAPTERS.module_dict, 'fake', CountingTask)
    CountingPredictor.batches = []
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'weights')
    return Config(dict(default_scope='fake')), str(checkpoint)


def test_infer_folder_mirrors_tree_and_skips_bad_files(tmp_path, fake_scope):
    cfg, checkpoint = fake_scope
    src = tmp_path / 'in'
    (src / 'sub' / 'deeper').mkdir(parents=True)
    for rel in ('a.jpg', 'a.png', 'sub/b.png', 'sub/deeper/c.bmp', 'sub/no_extension'):
        cv2.imwrite(str(src / (rel if '.' in rel else rel + '.png')), _rgb())
    (src / 'sub' / 'no_extension.png').rename(src / 'sub' / 'no_extension')
    (src / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    (src / 'sub' / 'readme.txt').write_text('hello')
    out = src / 'out'  # inside the input: must not be walked

    summary = infer_folder(cfg, checkpoint, src, out, batch_size=2)

    written = sorted(str(p.relative_to(out)) for p in out.rglob('*') if p.is_file())
    assert written == ['a_jpg_mean.txt', 'a_png_mean.txt', 'sub/b_mean.txt',
                       'sub/deeper/c_mean.txt', 'sub/no_extension_mean.txt']
    assert summary.num_images == 5 and summary.num_outputs == 5
    assert sorted(str(p) for p, _ in summary.skipped) == ['broken.jpg', 'sub/readme.txt']
    assert CountingPredictor.batches == [2, 2, 1]
    line = summary.line()
    assert '5 images processed' in line and 'broken.jpg' in line and 'sub/readme.txt' in line


def test_build_predictor_errors(tmp_path, fake_scope):
    cfg, checkpoint = fake_scope
    with pytest.raises(ValueError, match="no folder-inference predictor for default_scope 'x'"):
        build_predictor(Config(dict(default_scope='x')), checkpoint)
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        build_predictor(cfg, str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError, match='input folder not found'):
        infer_folder(cfg, checkpoint, tmp_path / 'nowhere', tmp_path / 'out')
    assert isinstance(build_predictor(cfg, checkpoint), CountingPredictor)


def test_predictor_options_must_fit_the_task(tmp_path):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    cfg = Config(dict(default_scope='mmseg'))
    with pytest.raises(ValueError, match=r"\['score_thr'\] do not apply to mmseg configs"):
        build_predictor(cfg, str(checkpoint), score_thr=0.5)

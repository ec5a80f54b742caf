"""Folder inference on hostile files: each bad file is named with its reason, each good one runs.

The folder mixes valid images of every awkward kind (grayscale, RGBA, 16-bit, palette, 1x1,
a thin strip, JPEG data behind a .png name) with files that must be refused without bringing
the run down or exhausting memory (empty, truncated, text named .jpg, a corrupt PNG, a valid but
oversize image and a decompression bomb whose header claims 3.6 gigapixels).
"""
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image, ImageFile

from mmreplk.apis import ImageReadError, infer_folder, read_image
from mmreplk.apis.inference import MAX_IMAGE_PIXELS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / 'configs' / 'demo' / 'upernet_replknet_tiny_demo.py'

GOOD = ['colour.jpg', 'gray.png', 'rgba.png', 'deep16.png', 'gray16.png', 'palette.gif',
        'one_pixel.png', 'strip.png', 'jpeg_named.png', 'sub/nested.bmp']
BAD = {
    'empty.jpg': 'empty file',
    'truncated.jpg': 'corrupt or truncated',
    'text.jpg': 'not an image',
    'bad_crc.png': 'corrupt or truncated',
    'huge_8000x8000.png': 'too large',
    'bomb_60000x60000.png': 'too large',
}


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload) & 0xffffffff))


def _gray_png(width: int, height: int, rows: int | None = None) -> bytes:
    """A black 8-bit grayscale PNG, compressed row by row so it never sits in memory whole.

    ``rows`` < ``height`` writes only that many rows: a header that promises more than it holds.
    """
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b'\x00' * (width + 1)  # filter byte + pixels
    data = b''.join(compressor.compress(row) for _ in range(height if rows is None else rows))
    data += compressor.flush()
    return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IDAT', data)
            + _png_chunk(b'IEND', b''))


def _colour(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_hostile_folder(root: Path) -> Path:
    """Writes the GOOD and BAD files under ``root``."""
    (root / 'sub').mkdir(parents=True)
    image = _colour(48, 64)
    cv2.imwrite(str(root / 'colour.jpg'), image)
    cv2.imwrite(str(root / 'gray.png'), image[..., 0])
    cv2.imwrite(str(root / 'rgba.png'), np.dstack([image, np.full(image.shape[:2], 9, np.uint8)]))
    cv2.imwrite(str(root / 'deep16.png'), image.astype(np.uint16) * 257)
    cv2.imwrite(str(root / 'gray16.png'), image[..., 1].astype(np.uint16) * 257)
    Image.fromarray(image[..., ::-1]).convert('P').save(root / 'palette.gif')
    cv2.imwrite(str(root / 'one_pixel.png'), _colour(1, 1))
    cv2.imwrite(str(root / 'strip.png'), _colour(3, 200))
    (root / 'jpeg_named.png').write_bytes(cv2.imencode('.jpg', image)[1].tobytes())
    cv2.imwrite(str(root / 'sub' / 'nested.bmp'), image)

    (root / 'empty.jpg').write_bytes(b'')
    jpeg = cv2.imencode('.jpg', _colour(96, 96))[1].tobytes()
    (root / 'truncated.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    (root / 'text.jpg').write_text('this is a shopping list, not a photo\n' * 20)
    png = bytearray(cv2.imencode('.png', image)[1].tobytes())
    png[-20] ^= 0xff  # inside the last IDAT: its CRC no longer matches
    (root / 'bad_crc.png').write_bytes(bytes(png))
    (root / 'huge_8000x8000.png').write_bytes(_gray_png(8000, 8000))
    (root / 'bomb_60000x60000.png').write_bytes(_gray_png(60000, 60000, rows=16))
    return root


@pytest.fixture(scope='module')
def demo_model(tmp_path_factory):
    """The tiny demo segmentor's config and a checkpoint of its (random) weights."""
    from mmseg.registry import MODELS

    import mmreplk  # noqa: F401
    folder = tmp_path_factory.mktemp('model')
    cfg = Config.fromfile(DEMO_CONFIG)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    meta = dict(dataset_meta=dict(classes=('sky', 'ground', 'disc', 'square', 'triangle'),
                                  palette=[[70, 130, 180], [140, 90, 40], [220, 20, 60],
                                           [0, 160, 80], [250, 200, 0]]))
    checkpoint = folder / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=meta), checkpoint)
    return cfg, checkpoint


@pytest.fixture(scope='module')
def hostile_dir(tmp_path_factory):
    return make_hostile_folder(tmp_path_factory.mktemp('hostile'))


@pytest.mark.parametrize('name,reason', sorted(BAD.items()))
def test_read_image_names_the_problem(hostile_dir, name, reason):
    with pytest.raises(ImageReadError, match=reason):
        read_image(hostile_dir / name)


def test_oversize_images_are_refused_from_their_header(hostile_dir, monkeypatch):
    # Neither decoder may touch them: the size check reads the header only.
    def no_decoding(*args, **kwargs):
        raise AssertionError('an oversize image was decoded')

    monkeypatch.setattr(cv2, 'imdecode', no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, 'load', no_decoding)
    for name, pixels in (('huge_8000x8000.png', 8000 * 8000), ('bomb_60000x60000.png', 60000**2)):
        with pytest.raises(ImageReadError, match=f'{pixels} pixels'):
            read_image(hostile_dir / name)


def test_max_pixels_is_adjustable(hostile_dir):
    assert 8000 * 8000 > MAX_IMAGE_PIXELS >= 4096 * 4096
    image = read_image(hostile_dir / 'huge_8000x8000.png', max_pixels=8000 * 8000)
    assert image.shape == (8000, 8000, 3)
    with pytest.raises(ImageReadError, match='too large'):
        read_image(hostile_dir / 'colour.jpg', max_pixels=100)


def test_infer_folder_processes_every_good_image(hostile_dir, demo_model, tmp_path):
    cfg, checkpoint = demo_model
    summary = infer_folder(cfg, str(checkpoint), hostile_dir, tmp_path / 'out', batch_size=3)
    skipped = {str(path): reason for path, reason in summary.skipped}
    assert sorted(skipped) == sorted(BAD)
    for name, reason in BAD.items():
        assert reason in skipped[name], (name, skipped[name])
    assert summary.num_images == len(GOOD)
    for name in GOOD:
        stem = tmp_path / 'out' / Path(name).with_suffix('')
        source = read_image(hostile_dir / name)
        labels = cv2.imread(f'{stem}_label.png', cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(f'{stem}_overlay.png', cv2.IMREAD_UNCHANGED)
        assert labels.shape == source.shape[:2] and overlay.shape == source.shape, name
        assert labels.max() < 5


def test_infer_tool_reports_each_bad_file_and_succeeds(hostile_dir, demo_model, tmp_path):
    cfg, checkpoint = demo_model
    folder = tmp_path / 'in'  # the bad files and one good image keep the subprocess short
    folder.mkdir()
    for name in [*BAD, 'colour.jpg']:
        shutil.copy(hostile_dir / name, folder / name)
    # Runs tools/infer.py as __main__ and reports the process's peak memory on the way out.
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak (this pytest process) into
    # the child's ru_maxrss across exec, while VmHWM belongs to the new address space alone.
    wrapper = ('import runpy, sys\n'
               'sys.argv = sys.argv[1:]\n'
               'try:\n'
               '    runpy.run_path(sys.argv[0], run_name="__main__")\n'
               'finally:\n'
               '    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]\n'
               '    print(f"PEAK_RSS_KIB={hwm[0].split()[1]}", file=sys.stderr)\n')
    proc = subprocess.run(
        [sys.executable, '-c', wrapper, 'tools/infer.py', str(DEMO_CONFIG), str(checkpoint),
         str(folder), '--out-dir', str(tmp_path / 'out')],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    for name, reason in BAD.items():
        line = next((l for l in log.splitlines() if 'skipped' in l and name in l), None)
        assert line is not None and reason in line, (name, log[-3000:])
    assert '1 images processed' in log
    peak_kib = int(log.rsplit('PEAK_RSS_KIB=', 1)[1].split()[0])
    # Decoding the bomb alone would take 3.6 GB, the 8000x8000 image's logits 1.3 GB.
    assert peak_kib < 1.5 * 2**20, f'peak memory {peak_kib / 2**20:.2f} GiB'

"""Images in: decoding any file defensively into a BGR uint8 array, and synthetic test images."""
from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from mmreplk.utils import UserError


class ImageReadError(UserError, ValueError):
    """A file could not be decoded as an image; the message says why."""


#: Default limit of :func:`read_image` on width x height (4096 x 4096). It bounds memory: a
#: segmentor's full-resolution logits take num_classes x 4 bytes per pixel (1.3 GB for 5 classes
#: at 8000 x 8000, 10 GB for ADE20K's 150 classes at this limit).
MAX_IMAGE_PIXELS = 4096 * 4096

# 16-bit RGBA stored uncompressed is the largest a pixel gets on disk.
_MAX_BYTES_PER_PIXEL = 8
_HEADER_SLACK = 1 << 20


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes an image file into a BGR uint8 array, whatever its channels and bit depth.

    Grayscale becomes three channels, an alpha channel is dropped, 16-bit samples are scaled to
    8 bits, and EXIF orientation is applied. Images above ``max_pixels`` are refused from their
    header, before any pixel is decoded, and so are files too big to hold that many pixels.

    Args:
        path (str | os.PathLike): The file.
        max_pixels (int): Largest accepted width x height. Defaults to
            :data:`MAX_IMAGE_PIXELS`. Pillow's own decompression-bomb check still refuses
            images above twice ``PIL.Image.MAX_IMAGE_PIXELS`` (about 179 million).

    Returns:
        np.ndarray: Image of shape (H, W, 3), dtype uint8.

    Raises:
        ImageReadError: The file is empty, not an image, truncated or corrupt, too large, or
            of an unsupported pixel type.
    """
    path = pathlib.Path(path)
    num_bytes = path.stat().st_size
    if num_bytes == 0:
        raise ImageReadError('empty file')
    if num_bytes > max_pixels * _MAX_BYTES_PER_PIXEL + _HEADER_SLACK:
        raise ImageReadError(f'too large: {num_bytes} bytes, more than an image of {max_pixels} '
                             f'pixels can take')
    data = path.read_bytes()
    # OpenCV decodes a truncated JPEG without an error (grey bottom rows), so PIL, which
    # raises on truncation, vets the file first.
    try:
        with Image.open(io.BytesIO(data)) as pil_image:
            width, height = pil_image.size
            if width * height > max_pixels:
                raise ImageReadError(f'too large: {width}x{height} = {width * height} pixels, '
                                     f'more than the limit of {max_pixels}')
            pil_image.load()
            fallback_mode = pil_image.mode
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError('not an image (unrecognised format)') from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(f'too large ({err})') from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f'corrupt or truncated image ({err})') from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        # Formats PIL reads but this OpenCV build does not (e.g. GIF).
        with Image.open(io.BytesIO(data)) as pil_image:
            if fallback_mode in ('I', 'I;16', 'F'):
                raise ImageReadError(f'unsupported pixel type {fallback_mode!r}')
            image = cv2.cvtColor(np.asarray(pil_image.convert('RGB')), cv2.COLOR_RGB2BGR)
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
        image = image.astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f'unsupported pixel type {image.dtype}')
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ImageReadError(f'unexpected decoded shape {image.shape}')
    return np.ascontiguousarray(image)


def synthetic_image(shape: Sequence[int] = (512, 512), seed: int = 0) -> np.ndarray:
    """A reproducible random BGR uint8 image, for checks that need no real picture.

    Args:
        shape (Sequence[int]): (H, W). Defaults to (512, 512).
        seed (int): Random seed. Defaults to 0.

    Returns:
        np.ndarray: Image of shape (H, W, 3), dtype uint8.
    """
    height, width = shape
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)

"""Reading image files, which are hostile input: bounded formats, sizes and pixel counts; one-line errors.

Used by the imagefolder dataset (folder_split.py) and by anything else that reads user images
(quantization calibration).
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from cidpipe.errors import DataError

# Image files are hostile input: a few kilobytes of PNG can declare 100 000 x 100 000 pixels (a
# "decompression bomb"), and PIL identifies a file by its content, not its suffix (an "image" may be
# an EPS that PIL would hand to Ghostscript). So the formats are limited to those IMAGE_SUFFIXES name,
# and the pixel count is bounded before anything is decoded: 8192 x 8192 is larger than the photos
# image-classification datasets hold (and 200 MB as RGB, per image and loader worker), while models
# here see at most data.input_size (<= 4096) squared.
MAX_IMAGE_PIXELS = 8192 * 8192
# Room for the largest file the pixel bound admits in a common format (16-bit RGB TIFF, ~400 MB).
MAX_IMAGE_FILE_BYTES = 512 * 1024 * 1024
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})
# PIL format ids of those suffixes (PIL's JPEG reader also returns the multi-picture MPO variant).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "PPM", "TIFF")


@functools.cache
def _open_formats() -> tuple[str, ...]:
    # Image.open raises KeyError for a format this Pillow build lacks (WebP is optional): ask only
    # for those it has.
    from PIL import Image

    Image.init()
    return tuple(f for f in IMAGE_FORMATS if f in Image.OPEN)


def check_image_file_size(path: Path, size: int) -> None:
    """DataError naming ``path`` when a file of ``size`` bytes cannot be an image we decode."""
    if size == 0:
        raise DataError(f"image {path} is empty (0 bytes); remove or replace the file")
    if size > MAX_IMAGE_FILE_BYTES:
        raise DataError(f"image {path} is {size} bytes (limit {MAX_IMAGE_FILE_BYTES}); "
                        "remove or shrink the file")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:200] if text else type(err).__name__)


def decode_image(path: Path, size: int | tuple[int, int] | None, mode: str = "RGB") -> np.ndarray:
    """uint8 [H, W, 3] ("RGB") or [H, W] ("L") of the image at ``path`` resized to ``size``.

    ``size`` is the side of a square, (height, width), or None to keep the image's own size (the
    per-sample transforms crop and resize it themselves). Everything that can go wrong with a hostile
    file is a DataError naming it: empty or oversized files, formats other than IMAGE_FORMATS, more
    than MAX_IMAGE_PIXELS (also when PIL only warns), truncated or damaged data. For any caller that
    reads user images (e.g. quantization calibration), not only the imagefolder dataset.
    """
    from PIL import Image

    try:
        check_image_file_size(path, path.stat().st_size)
        with warnings.catch_warnings():
            # PIL only *warns* between its limit and twice that; a bomb must stop the run, not scroll by.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_open_formats()) as img:  # reads the header only
                img_width, img_height = img.size
                if img_width * img_height > MAX_IMAGE_PIXELS:
                    raise DataError(f"image {path} is {img_width}x{img_height} pixels, more than the "
                                    f"{MAX_IMAGE_PIXELS} allowed (a decompression bomb?); "
                                    "remove or shrink it")
                height, width = ((img_height, img_width) if size is None else
                                 (size, size) if isinstance(size, int) else tuple(size))
                converted = img.convert(mode)
                if size is not None:
                    converted = converted.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(converted, dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"image {path} is too large to decode ({_first_line(err)}); "
                        "remove or shrink it") from err
    except Exception as err:
        # PIL's format plugins fail on damaged input with many exception types (OSError for truncated
        # data, SyntaxError, ValueError, struct.error, ...): any of them means this one file is bad.
        raise DataError(f"cannot decode image {path}: {_first_line(err)}; "
                        "remove or replace the file") from err
    expected = (height, width, 3) if mode == "RGB" else (height, width)
    if array.shape != expected:
        raise DataError(f"cannot decode image {path}: got an array of shape {array.shape}; "
                        "remove or replace the file")
    return array


def _file_sha256(path: Path) -> bytes:
    # Streamed: a large file is hashed in 1 MB pieces instead of being read into memory whole.
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            check_image_file_size(path, os.fstat(fh.fileno()).st_size)
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err.strerror or err}; "
                        "remove or replace the file") from err
    return digest.digest()

"""Calibration images are user files: they go through the dataset's bounded decoder (decode_image).

A few hundred bytes of PNG that declare 9000 x 9000 pixels (above cidpipe's 8192 x 8192 bound) or
20 000 x 20 000 (above PIL's own limit) must be a one-line DataError naming the file (decided from the
header, so nothing is decoded); a PostScript file with a .png suffix must never reach Ghostscript.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from cidpipe.errors import DataError
from cidpipe.quantize.calibration import load_calibration_dir
from tests.trust.hostile import png_bytes

_HOSTILE = {
    "above-cidpipe-limit": (png_bytes(9_000, 9_000, zlib.compress(b"\0" * 64)), "9000x9000 pixels"),
    "above-pil-limit": (png_bytes(20_000, 20_000, zlib.compress(b"\0" * 64)), "too large"),
    "postscript": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n", "cannot decode"),
}


@pytest.mark.parametrize("kind", sorted(_HOSTILE))
def test_a_hostile_calibration_image_is_a_one_line_data_error(tmp_path, kind):
    content, needle = _HOSTILE[kind]
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(tmp_path / "a-good.png")
    (tmp_path / "b-hostile.png").write_bytes(content)
    with pytest.raises(DataError) as caught:
        load_calibration_dir(tmp_path, (3, 16, 16), mean=[0.5], std=[0.25])
    message = str(caught.value)
    assert "\n" not in message and needle in message and "b-hostile.png" in message, message
    assert message.startswith("cannot read calibration image")

"""Calibration data for static INT8: validated arrays, a batched ORT data reader, a content hash.

Calibration images come from the training split (the stage draws them); quantizing without them is
refused, because scales guessed from random data silently wreck accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from cidpipe.errors import DataError, UsageError

NO_CALIBRATION = "quantize needs calibration images from the training split; got none"
# The suffixes the imagefolder dataset reads, so a calibration directory accepts the same files.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")


def check_calibration(calib_x: np.ndarray | None) -> np.ndarray:
    """``calib_x`` as contiguous float32 [N, C, H, W]; None or empty -> UsageError."""
    if calib_x is None or len(calib_x) == 0:
        raise UsageError(NO_CALIBRATION)
    x = np.ascontiguousarray(calib_x, dtype=np.float32)
    if x.ndim != 4:
        raise UsageError(f"calibration images must be [N, C, H, W]; got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise DataError(
            "calibration images contain NaN or inf; check the normalisation of the training split"
        )
    return x


def calibration_fingerprint(calib_x: np.ndarray) -> dict[str, int | str]:
    """Size and sha256 of the exact float32 bytes used, so a quantized artifact names its calibration set."""
    x = np.ascontiguousarray(calib_x, dtype=np.float32)
    return {"samples": int(len(x)), "sha256": hashlib.sha256(x.tobytes()).hexdigest()}


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds ``x`` to the ORT calibrator ``batch_size`` rows at a time (rewindable, sized)."""

    def __init__(self, input_name: str, x: np.ndarray, batch_size: int = 32) -> None:
        self.input_name = input_name
        self.x = check_calibration(x)
        self.batch_size = max(1, int(batch_size))
        self._start = 0
        self._end = len(self.x)
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        chunk = self.x[self._pos : min(self._pos + self.batch_size, self._end)]
        self._pos += len(chunk)
        return {self.input_name: chunk}

    def rewind(self) -> None:
        self._pos = self._start

    def set_range(self, start_index: int, end_index: int) -> None:  # used by ORT's strided MinMax
        self._start, self._end = int(start_index), min(int(end_index), len(self.x))
        self._pos = self._start

    def __len__(self) -> int:
        return len(self.x)


def load_calibration_dir(
    path: Path,
    input_shape: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    limit: int | None = None,
) -> np.ndarray:
    """Read image files (IMAGE_SUFFIXES, sorted by name) as normalised float32 [N, C, H, W].

    Images are resized to (H, W) and converted to RGB (C=3) or grey (C=1); an empty directory is a UsageError.
    Decoding goes through the dataset's bounded decoder: calibration images are user files too, so a
    decompression bomb, a format other than the listed ones or a damaged file is a DataError naming it.
    """
    from cidpipe.data.folder_split import decode_image

    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"calibration directory {path} does not exist or is not a directory")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None:
        files = files[:limit]
    if not files:
        raise UsageError(f"{NO_CALIBRATION} ({path} holds no {'/'.join(IMAGE_SUFFIXES)} files)")
    channels, height, width = input_shape
    if channels not in (1, 3):
        raise UsageError(f"calibration images can be loaded for 1 or 3 channels; the model takes {channels}")
    mean_arr = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    std_arr = np.asarray(std, np.float32).reshape(-1, 1, 1)
    if mean_arr.shape[0] not in (1, channels) or std_arr.shape[0] not in (1, channels):
        raise UsageError(
            f"mean/std have {mean_arr.shape[0]}/{std_arr.shape[0]} values for {channels} channels"
        )
    out = np.empty((len(files), channels, height, width), np.float32)
    for i, file in enumerate(files):
        try:
            decoded = decode_image(file, (height, width), mode="RGB" if channels == 3 else "L")
        except DataError as err:  # already names the file and the fix; say which input it was
            raise DataError(f"cannot read calibration image: {err}") from err
        arr = decoded.astype(np.float32) / 255.0
        out[i] = (arr.reshape(height, width, -1).transpose(2, 0, 1) - mean_arr) / std_arr
    return out

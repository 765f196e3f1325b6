"""``cidpipe predict``: the top-k classes of image files under an artifact's own preprocessing.

The preprocessing comes from what was recorded with the model, never from the caller: the input shape,
mean, std and class names of the ONNX metadata (an .onnx file) or of the stage manifest (a teacher/student
directory). Images are decoded by the same bounded decoder as the datasets (cidpipe/data/image_files.py),
converted to the model's channel count and resized to its input size; the optional ``crop_pct`` of the
model's eval view (resize to size / crop_pct, centre crop) is honoured when recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cidpipe.errors import ModelError, UsageError


@dataclass(frozen=True)
class Preprocessing:
    input_shape: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    crop_pct: float | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any], source: str) -> Preprocessing:
        shape = spec.get("input_shape")
        if not shape or len(shape) != 3:
            raise ModelError(f"{source} records no input shape; re-export it with this cidpipe")
        channels = int(shape[0])
        mean = tuple(float(v) for v in spec.get("mean") or [0.0] * channels)
        std = tuple(float(v) for v in spec.get("std") or [1.0] * channels)
        names = tuple(str(n) for n in spec.get("class_names") or [])
        crop = spec.get("crop_pct")
        return cls((channels, int(shape[1]), int(shape[2])), mean, std, names, float(crop) if crop else None)

    def image(self, path: Path) -> np.ndarray:
        """float32 [C, H, W], normalised like the model's evaluation images."""
        from cidpipe.data.image_files import decode_image

        channels, height, width = self.input_shape
        mode = "L" if channels == 1 else "RGB"
        if self.crop_pct:
            big = (round(height / self.crop_pct), round(width / self.crop_pct))
            pixels = decode_image(path, big, mode)
            top, left = (big[0] - height) // 2, (big[1] - width) // 2
            pixels = pixels[top : top + height, left : left + width]
        else:
            pixels = decode_image(path, (height, width), mode)
        array = pixels.astype(np.float32) / 255.0
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (array - mean) / std


def load_predictor(artifact: Path) -> tuple[Preprocessing, Callable[[np.ndarray], np.ndarray]]:
    """(preprocessing, logits(x)) of an .onnx file or a teacher/student stage directory."""
    if not artifact.exists():
        raise UsageError(
            f"{artifact} does not exist; pass an .onnx file or a stage directory (runs/<name>/student)"
        )
    if artifact.is_file() and artifact.suffix == ".onnx":
        from cidpipe.export.ort_run import make_session, run_onnx
        from cidpipe.export.torch2onnx import read_onnx_metadata

        prep = Preprocessing.from_spec(read_onnx_metadata(artifact), str(artifact))
        session = make_session(artifact, providers=("CPUExecutionProvider",), threads=1)
        return prep, lambda x: run_onnx(session, x)
    if artifact.is_dir():
        from cidpipe.export.parity import torch_logits
        from cidpipe.modelio import load_stage_model

        module, manifest = load_stage_model(artifact)
        prep = Preprocessing.from_spec(manifest.model or {}, str(artifact))
        return prep, lambda x: torch_logits(module, x)
    raise UsageError(f"{artifact}: pass an .onnx file or a stage directory (runs/<name>/student)")


def predict(artifact: Path, images: Sequence[Path], top_k: int = 5) -> list[dict[str, Any]]:
    """Per image: its path and the ``top_k`` (class, probability) pairs, most likely first."""
    if not images:
        raise UsageError("no image given; pass one or more image files after the artifact")
    if top_k < 1:
        raise UsageError(f"--top-k {top_k}: give a positive number of classes")
    prep, logits_of = load_predictor(Path(artifact))
    batch = np.stack([prep.image(Path(path)) for path in images])
    logits = logits_of(batch).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    out = []
    for path, row in zip(images, probs, strict=True):
        order = np.argsort(-row)[: min(top_k, row.size)]
        out.append(
            {
                "image": str(path),
                "top": [
                    {"class": _name(prep, int(i)), "index": int(i), "probability": float(row[i])}
                    for i in order
                ],
            }
        )
    return out


def _name(prep: Preprocessing, index: int) -> str:
    return prep.class_names[index] if index < len(prep.class_names) else str(index)

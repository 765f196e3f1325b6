"""A file-backed run end to end through ``fit``: rectangular PNGs, val/ folder, mean/std auto, the
imagenet transforms preset and the fine-tuning optimiser; an interrupted run resumes bit-identically
(the per-sample augmentation is seeded from (seed, epoch, sample), nothing else)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cidpipe.data.config import DataConfig
from cidpipe.data.registry import load_dataset
from cidpipe.distill.config import DistillConfig
from cidpipe.distill.registry import build_distiller
from cidpipe.models import build_model
from cidpipe.train_config import OptimConfig
from cidpipe.training.loop import RunSettings, fit

EPOCHS = 3


def _write(folder: Path, per_class: int, rng: np.random.Generator) -> None:
    for label, colour in enumerate(((220, 30, 30), (30, 30, 220))):
        (folder / str(label)).mkdir(parents=True)
        for i in range(per_class):
            height, width = rng.integers(24, 40, 2)
            pixels = rng.integers(0, 120, (height, width, 3), dtype=np.int64).astype(np.uint8)
            pixels[4:-4, 4:-4] = colour
            Image.fromarray(pixels).save(folder / str(label) / f"{i}.png")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for part, count in (("train", 16), ("val", 4), ("test", 4)):
        _write(root / part, count, rng)
    return load_dataset(DataConfig(name="imagefolder", root=root, input_size=[16, 20], mean="auto",
                                   std="auto", transforms={"train": "imagenet"}, batch_size=8))


def _distiller():
    torch.manual_seed(0)
    model = build_model("tinycnn", 2, in_channels=3)
    return build_distiller("ce", model, None, DistillConfig(), num_classes=2, epochs=EPOCHS)


def _run(path: Path) -> RunSettings:
    return RunSettings(device="cpu", seed=1, batch_size=8, eval_batch_size=16, base_lr=3e-3,
                       checkpoint_path=path, label="folder")


CFG = OptimConfig(epochs=EPOCHS, optimizer="adamw", lr=3e-3, warmup_epochs=1, label_smoothing=0.1,
                  head_lr_scale=2.0, schedule="cosine", select="last")


def test_file_backed_finetune_resumes_bit_identically(bundle, tmp_path: Path) -> None:
    assert bundle.input_shape == (3, 16, 20) and len(bundle.val) == 8
    straight = _distiller()
    result = fit(straight, bundle, CFG, _run(tmp_path / "a.pt"))
    assert [round(r["lr"], 8) for r in result.history][0] == round(3e-3 * 0.5, 8)

    interrupted = _distiller()
    original = interrupted.on_epoch_start

    def stop_at_epoch_2(epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt
        original(epoch)

    interrupted.on_epoch_start = stop_at_epoch_2
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, bundle, CFG, _run(tmp_path / "b.pt"))
    resumed = _distiller()
    fit(resumed, bundle, CFG, _run(tmp_path / "b.pt"))
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key

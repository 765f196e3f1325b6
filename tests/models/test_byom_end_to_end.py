"""Bring your own model, end to end, as a deployment engineer would: weights files in the libraries' own
layouts, an image folder with train/val/test, a teacher that sees another input size and other statistics
than the student, ``cidpipe run``, then ``cidpipe eval`` and ``cidpipe bench`` in fresh processes.

The weights are made here exactly the way a user makes them (``torch.save(model.state_dict())`` of a
torchvision and a timm network); the images are real (sklearn's digits written as PNG files).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cidpipe.manifest import read_manifest
from tests.conftest import json_reply, run_cli

pytestmark = pytest.mark.slow


def write_digit_folder(root, per_class: dict[str, int]) -> None:
    """train/val/test class folders of real digit images (8x8, upscaled by the loader)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    taken = {label: 0 for label in range(10)}
    for split, count in per_class.items():
        for label in range(10):
            (root / split / f"digit{label}").mkdir(parents=True, exist_ok=True)
            indices = np.flatnonzero(digits.target == label)[taken[label] : taken[label] + count]
            taken[label] += count
            for index in indices:
                pixels = (digits.images[index] / 16.0 * 255).astype(np.uint8)
                Image.fromarray(pixels, mode="L").convert("RGB").save(
                    root / split / f"digit{label}" / f"{index}.png"
                )


def test_native_weights_image_folder_and_two_input_sizes(tmp_path):
    import timm
    import torchvision

    write_digit_folder(tmp_path / "images", {"train": 24, "val": 6, "test": 8})
    teacher_weights = tmp_path / "resnet18_digits.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), teacher_weights)  # native layout
    student_weights = tmp_path / "mobilenetv3_small_050_in1k.pth"
    torch.save(timm.create_model("mobilenetv3_small_050", num_classes=1000).state_dict(), student_weights)

    recipe = {
        "name": "byom",
        "out_dir": str(tmp_path / "runs"),
        "data": {"name": "imagefolder", "root": str(tmp_path / "images"), "input_size": 32, "batch_size": 32,
                 "mean": "auto", "std": "auto"},
        "teacher": {"model": {"arch": "torchvision:resnet18", "weights": str(teacher_weights)},
                    "input": {"input_size": 40, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                    "train": {"epochs": 1}},
        "student": {"model": {"arch": "timm:mobilenetv3_small_050", "weights": str(student_weights)},
                    "train": {"epochs": 2, "optimizer": "adamw", "lr": 0.002, "schedule": "cosine",
                              "head_lr_scale": 5.0}},
        "distill": {"method": "cid", "cid": {"warmup_epochs": 1}},
        "quantize": {"enabled": True, "calibration": {"samples": 32}},
        "export": {"enabled": True, "parity": {"samples": 32, "max_abs_diff": 1e-3}},
        "bench": {"enabled": True, "runs": 2, "min_seconds": 0.0, "warmup_runs": 1,
                  "min_agreement": 0.0},  # two-epoch models near chance: agreement says nothing here
        "gate": {"enabled": True, "min_top1": 0.0},
        "report": {"enabled": False},
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    done = run_cli("run", str(path), "--device", "cpu", timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "re-initialised" in done.stderr  # the student's 1000-class head was reset, and the log says so
    assert "resized to [3, 40, 40]" in done.stderr  # the teacher sees its own input size
    assert f"imported teacher weights from {teacher_weights}: test top-1 " in done.stderr
    assert "% on 40x40 px images (teacher.input)\n" in done.stderr  # what the weights were judged on

    run_dir = tmp_path / "runs" / "byom"
    teacher = read_manifest(run_dir / "teacher", "teacher")
    assert teacher.metrics["imported_from"] == str(teacher_weights)  # imported as is: its head matched
    assert teacher.model["input_shape"] == [3, 40, 40] and teacher.model["arch"] == "torchvision:resnet18"
    student = read_manifest(run_dir / "student", "student")
    source = student.model["source"]
    assert source["head_reset"] is True and source["checkpoint_classes"] == 1000
    assert source["weights_sha256"] and student.model["input_shape"] == [3, 32, 32]
    assert student.model["mean"] != [0.485, 0.456, 0.406]  # auto: computed from the training images

    # Fresh processes, nothing registered: everything is rebuilt from the manifests.
    evaluated = run_cli("eval", str(run_dir), "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json_reply(evaluated)
    assert result["test_top1"] == pytest.approx(student.metrics["test_top1"])
    benched = run_cli("bench", str(run_dir), "--force", "--json", timeout=600)
    assert benched.returncode == 0, benched.stderr[-3000:]
    rows = json_reply(benched)["results"]
    formats = {(row["role"], row["format"]) for row in rows if row["status"] == "pass"}
    assert {("student", "torch"), ("student", "onnx-fp32"), ("student", "onnx-int8")} <= formats
    assert {("teacher", "torch"), ("teacher", "onnx-fp32")} <= formats
    teacher_rows = [row for row in rows if row["role"] == "teacher"]
    assert all(row["agreement"] == 100.0 for row in teacher_rows if row["format"] == "torch")
    assert json.loads((run_dir / "gate" / "gate.json").read_text())["passed"] is True

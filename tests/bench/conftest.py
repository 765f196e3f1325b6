"""Tiny real models and data for the bench tests: an MLP classifier as ONNX (built with onnx.helper),
the same weights as a torch module, and a numpy reference of its forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

IMAGE_SHAPE = (1, 4, 4)  # C, H, W
NUM_CLASSES = 10
HIDDEN = 16


@dataclass
class TinyClassifier:
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        hidden = np.maximum(x.reshape(len(x), -1) @ self.w1.T + self.b1, 0.0)
        return hidden @ self.w2.T + self.b2

    def torch_module(self) -> torch.nn.Module:
        features = int(np.prod(IMAGE_SHAPE))
        module = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(features, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, NUM_CLASSES),
        )
        with torch.no_grad():
            module[1].weight.copy_(torch.from_numpy(self.w1))
            module[1].bias.copy_(torch.from_numpy(self.b1))
            module[3].weight.copy_(torch.from_numpy(self.w2))
            module[3].bias.copy_(torch.from_numpy(self.b2))
        return module.eval()

    def save_onnx(self, path: Path) -> Path:
        """Flatten -> Gemm -> Relu -> Gemm with a dynamic batch dimension."""
        inits = [
            numpy_helper.from_array(a, name)
            for a, name in [(self.w1, "w1"), (self.b1, "b1"), (self.w2, "w2"), (self.b2, "b2")]
        ]
        nodes = [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "w1", "b1"], ["hidden"], transB=1),
            helper.make_node("Relu", ["hidden"], ["act"]),
            helper.make_node("Gemm", ["act", "w2", "b2"], ["logits"], transB=1),
        ]
        graph = helper.make_graph(
            nodes,
            "tiny_classifier",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8  # readable by every onnxruntime >= 1.10
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return path


def make_classifier(seed: int) -> TinyClassifier:
    rng = np.random.default_rng(seed)
    features = int(np.prod(IMAGE_SHAPE))
    return TinyClassifier(
        w1=rng.normal(0, 0.5, (HIDDEN, features)).astype(np.float32),
        b1=rng.normal(0, 0.1, HIDDEN).astype(np.float32),
        w2=rng.normal(0, 0.5, (NUM_CLASSES, HIDDEN)).astype(np.float32),
        b2=rng.normal(0, 0.1, NUM_CLASSES).astype(np.float32),
    )


@pytest.fixture(scope="session")
def classifier_factory():
    """make_classifier(seed): another tiny classifier with different weights."""
    return make_classifier


@pytest.fixture(scope="session")
def classifier() -> TinyClassifier:
    return make_classifier(0)


@pytest.fixture(scope="session")
def eval_set(classifier: TinyClassifier) -> dict[str, np.ndarray]:
    """x, y and ref_pred; samples whose top-2 logits are closer than 1e-3 are dropped so float
    rounding differences between numpy and onnxruntime cannot flip an argmax."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (80, *IMAGE_SHAPE)).astype(np.float32)
    logits = classifier.logits(x)
    top2 = np.sort(logits, axis=1)[:, -2:]
    x = x[(top2[:, 1] - top2[:, 0]) > 1e-3][:50]
    y = rng.integers(0, NUM_CLASSES, len(x)).astype(np.int64)
    pred = classifier.logits(x).argmax(axis=1)
    y[: len(y) // 2] = pred[: len(y) // 2]  # about half right, so top-1 is neither 0 nor 100
    ref_pred = pred.copy()
    ref_pred[:5] = (ref_pred[:5] + 1) % NUM_CLASSES  # 90 % agreement with the reference
    return {"x": x, "y": y, "ref_pred": ref_pred}


@pytest.fixture(scope="session")
def onnx_path(tmp_path_factory: pytest.TempPathFactory, classifier: TinyClassifier) -> Path:
    return classifier.save_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def npz_path(tmp_path_factory: pytest.TempPathFactory, eval_set: dict[str, np.ndarray]) -> Path:
    path = tmp_path_factory.mktemp("data") / "eval.npz"
    np.savez(path, **eval_set)
    return path

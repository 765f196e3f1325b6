"""Top-1 / top-5 / agreement of any backend on an evaluation set; every number in percent."""

from __future__ import annotations

from typing import Any

import numpy as np


def tile_to_batch(x: np.ndarray, batch_size: int) -> np.ndarray:
    """``batch_size`` samples from ``x``, repeating samples when the set is smaller."""
    return x[np.arange(batch_size) % len(x)]


def predict_logits(backend: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits for every sample; the last batch is padded to a full batch so fixed-batch engines work."""
    chunks = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        real = len(batch)
        if real < batch_size:
            batch = tile_to_batch(batch, batch_size)
        chunks.append(np.asarray(backend.run(batch))[:real])
    return np.concatenate(chunks, axis=0)


def evaluate(
    backend: Any, x: np.ndarray, y: np.ndarray, batch_size: int, ref_pred: np.ndarray | None = None
) -> dict[str, Any]:
    """{"n", "top1", "top5" (only when there are more than 5 classes), "agreement" (with ref_pred),
    "per_class_top1" (percent per class, None for a class absent from y), "confusion" (rows: true class,
    columns: predicted; only up to MAX_CONFUSION_CLASSES classes, where a matrix is still readable)}."""
    if len(x) == 0:
        raise ValueError("the evaluation set is empty")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    logits = predict_logits(backend, x, batch_size)
    labels = np.asarray(y, dtype=np.int64)
    pred = logits.argmax(axis=1)
    result: dict[str, Any] = {"n": int(len(labels)), "top1": float((pred == labels).mean() * 100.0)}
    num_classes = logits.shape[1]
    if num_classes > 5:
        top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        result["top5"] = float((top5 == labels[:, None]).any(axis=1).mean() * 100.0)
    if ref_pred is not None:
        reference = np.asarray(ref_pred, dtype=np.int64)
        if len(reference) != len(labels):
            raise ValueError(f"ref_pred has {len(reference)} entries for {len(labels)} samples")
        result["agreement"] = float((pred == reference).mean() * 100.0)
    result["per_class_top1"] = per_class_top1(pred, labels, num_classes)
    if num_classes <= MAX_CONFUSION_CLASSES:
        result["confusion"] = confusion_matrix(pred, labels, num_classes)
    return result


MAX_CONFUSION_CLASSES = 20


def accuracy_of(
    backend: Any, x: np.ndarray, y: np.ndarray, batch_size: int, ref_pred: np.ndarray | None = None
) -> dict[str, Any]:
    """:func:`evaluate` on the arithmetic the artifact is deployed with: a TensorRT INT8 graph on an ORT
    CPU session is evaluated on its exact Q/DQ twin (``arithmetic`` names it in the result)."""
    from cidpipe_runtime.ort_backend import EXACT_QDQ, exact_qdq_twin

    twin = exact_qdq_twin(backend)
    if twin is None:
        return evaluate(backend, x, y, batch_size, ref_pred)
    return {**evaluate(twin, x, y, batch_size, ref_pred), "arithmetic": EXACT_QDQ}


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> list[list[int]]:
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, pred), 1)
    return counts.tolist()


def per_class_top1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    out: list[float | None] = []
    for cls in range(num_classes):
        mask = labels == cls
        out.append(float((pred[mask] == cls).mean() * 100.0) if mask.any() else None)
    return out

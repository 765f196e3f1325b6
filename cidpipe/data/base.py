"""Public data types: :class:`Split` and its two kinds, and :class:`DatasetBundle`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cidpipe.data.folder_split import ImageFolderSplit
from cidpipe.data.split import Split
from cidpipe.data.tensor_split import TensorSplit

__all__ = ["DatasetBundle", "ImageFolderSplit", "Split", "TensorSplit"]


@dataclass
class DatasetBundle:
    """Everything a stage needs about a dataset: its splits, classes, input shape and normalisation.

    ``val`` is carved from the training set (model selection never sees ``test``); ``extra_test`` holds
    further evaluation splits (the bias flavours ``aligned``/``unbiased``/``conflicting``), else empty.
    """

    name: str
    class_names: list[str]
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    val: Split
    test: Split
    extra_test: dict[str, Split] = field(default_factory=dict)
    # How the bundle was made (split seeds and fractions, bias settings, source files): for manifests.
    provenance: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test, **self.extra_test}

    def classes_without_samples(self) -> dict[str, list[str]]:
        """Per evaluation split (val, test), the classes it holds no sample of: its accuracy says nothing
        about them (an image folder whose val/ lacks a class folder, a tiny carved validation split)."""
        missing = {}
        for name in ("val", "test"):
            split = getattr(self, name)
            if len(split) == 0:
                continue
            present = set(split.labels.tolist())
            absent = [c for i, c in enumerate(self.class_names) if i not in present]
            if absent:
                missing[name] = absent
        return missing

    def describe(self) -> dict[str, Any]:
        """Sizes, content fingerprints and normalisation: the ``data`` record of a stage manifest."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "splits": {name: split.describe() for name, split in self.splits().items()},
            "provenance": dict(self.provenance),
        }

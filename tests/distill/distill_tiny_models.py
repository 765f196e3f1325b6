"""A tiny model with exactly the ClassifierModel feature API (forward_features, classifier, feature_dim,
num_classes), so the distillation tests do not depend on the model zoo's architectures."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TinyClassifier(nn.Module):
    def __init__(
        self, feature_dim: int, num_classes: int, in_channels: int = 3, batch_norm: bool = True
    ) -> None:
        super().__init__()
        self.name = f"tiny{feature_dim}"
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 8, 3, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(8))
        layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, feature_dim), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))


def make_pair(
    student_dim: int = 12, teacher_dim: int = 20, num_classes: int = 6, seed: int = 0, batch_norm: bool = True
) -> tuple[TinyClassifier, TinyClassifier]:
    """A (student, teacher) pair with deterministic weights; d_s != d_t on purpose."""
    torch.manual_seed(seed)
    student = TinyClassifier(student_dim, num_classes, batch_norm=batch_norm)
    teacher = TinyClassifier(teacher_dim, num_classes, batch_norm=batch_norm)
    return student, teacher


def make_batches(
    count: int, batch: int, num_classes: int, seed: int = 1, size: int = 8
) -> list[tuple[Tensor, Tensor]]:
    """Deterministic image batches whose labels repeat, include singletons and miss some classes."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        x = torch.randn(batch, 3, size, size, generator=generator)
        # Only the first num_classes - 1 classes ever appear: the last one stays unseen.
        y = torch.randint(0, num_classes - 1, (batch,), generator=generator)
        batches.append((x, y))
    return batches

"""Small real models for the export/quantize tests: a BN conv net trained on sklearn digits, and a stand-in
with exactly the CID deployable graph (h -> z=fc(h) -> p=softmax(z/T) -> m=p@D -> head([h; m]))."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SmallConvNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        # Digits need spatial layout: pool to 4x4 (not 1x1) before the classifier.
        self.classifier = nn.Linear(width * 16, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 4).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


class CIDStandIn(nn.Module):
    """The graph of cidpipe.distill.deploy.CIDDeployable, written here so these tests do not depend on it."""

    def __init__(self, backbone: SmallConvNet, dictionary: torch.Tensor, temperature: float = 4.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("dictionary", dictionary.clone())
        self.temperature = float(temperature)
        dim, classes = dictionary.shape[1], dictionary.shape[0]
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone.forward_features(x)
        p = torch.softmax(self.backbone.classifier(h) / self.temperature, dim=1)
        m = p @ self.dictionary
        return self.head(torch.cat([h, m], dim=1))


def digits_32(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn digits (8x8, bundled with scikit-learn, no download) upsampled to 1x32x32, standardised."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = ((x - 0.3) / 0.4).numpy()
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    cut = int(0.8 * len(y))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int = 3, lr: float = 0.03) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt))
        for i in range(0, len(yt), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def make_cid_standin(backbone: SmallConvNet, x: np.ndarray, y: np.ndarray) -> CIDStandIn:
    """Dictionary = class means of h (what CID accumulates), new head trained briefly on [h; m]."""
    with torch.no_grad():
        h = backbone.eval().forward_features(torch.from_numpy(x))
        classes = int(y.max()) + 1
        dictionary = torch.stack([h[torch.from_numpy(y == c)].mean(0) for c in range(classes)])
    model = CIDStandIn(backbone, dictionary)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return train(model, x, y, epochs=2)

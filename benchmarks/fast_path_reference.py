"""A "reference-style" CID training step: the structure of the public reference implementation, rewritten.

Written from docs/cid-method.md's description of how the reference code is organised (no code copied):
- data: a torchvision-style Dataset of HWC uint8 images, one PIL image per sample, per-sample
  transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize), a DataLoader with
  worker processes, batches copied to the device each step;
- the class-shape loss loops over the classes present in the batch in Python;
- the dictionary is updated one sample at a time with Python scalars read from the device (``.item()``
  style host syncs), the per-class weight totals live in CPU counters;
- a plain (non-fused) SGD.
It is used by benchmarks/bench_fast_path.py, benchmarks/gpu_check.py and tests/fastpath as the "plain path".
The maths is the same as cidpipe's CID (cidpipe/distill/methods/cid.py); only the structure differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class PILImages(Dataset):
    """uint8 images [N, C, H, W] served one PIL image at a time through ``transform``."""

    def __init__(self, images: Tensor, labels: Tensor, transform) -> None:
        hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
        # Grayscale (C=1) becomes a 2-D "L" image, as torchvision's MNIST datasets do.
        self.images = hwc[..., 0] if hwc.shape[-1] == 1 else hwc
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def reference_transform(mean: Sequence[float], std: Sequence[float], *, augment: bool, size: int = 32,
                        pad: int = 4, hflip: bool = True) -> transforms.Compose:
    steps: list = []
    if augment:
        steps.append(transforms.RandomCrop(size, padding=pad))
        if hflip:
            steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def reference_loader(images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float], *,
                     batch_size: int, num_workers: int, augment: bool, order: Sequence[int] | None = None,
                     seed: int = 0, persistent: bool = False) -> DataLoader:
    """Shuffled (or in ``order``) DataLoader over PIL images, as the reference builds its train loader."""
    dataset = PILImages(images, labels, reference_transform(mean, std, augment=augment))
    generator = torch.Generator().manual_seed(seed)
    sampler = list(order) if order is not None else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                      num_workers=num_workers, generator=generator,
                      persistent_workers=persistent and num_workers > 0)


class ReferenceStyleCID:
    """One CID step per call, structured like the reference (loops, host syncs, CPU counters).

    Holds the student, the frozen teacher, the regressor R and the head g (shared or copied by the caller),
    the dictionary D in use and the accumulators of the next one.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, regressor: nn.Linear, head: nn.Linear, *,
                 num_classes: int, temperature: float = 4.0, kd_weight: float = 1.0,
                 sample_weight: float = 10.0, class_weight: float = 1.0, lr: float = 0.05,
                 momentum: float = 0.9, weight_decay: float = 5e-4, device: str = "cpu") -> None:
        self.student, self.teacher, self.regressor, self.head = student, teacher.eval(), regressor, head
        self.num_classes, self.temperature, self.device = num_classes, temperature, device
        self.kd_weight, self.sample_weight, self.class_weight = kd_weight, sample_weight, class_weight
        decayed = list(student.parameters()) + list(head.parameters())
        self.optimizer = torch.optim.SGD(
            [{"params": decayed, "weight_decay": weight_decay},
             {"params": list(regressor.parameters()), "weight_decay": 0.0}],
            lr=lr, momentum=momentum, nesterov=True, foreach=False)
        feature_dim = int(student.feature_dim)
        self.dictionary = torch.zeros(num_classes, feature_dim, device=device)
        self.use_head = False
        self.reset_accumulators()

    def reset_accumulators(self) -> None:
        self.feature_sums = torch.zeros(self.num_classes, int(self.student.feature_dim), device=self.device)
        self.weight_counts = [0.0] * self.num_classes  # CPU counters, as in the reference

    def next_dictionary(self) -> Tensor:
        rows = [self.feature_sums[c] / self.weight_counts[c] if self.weight_counts[c] > 0
                else torch.zeros_like(self.feature_sums[c]) for c in range(self.num_classes)]
        return torch.stack(rows)

    def class_loss(self, student_feat: Tensor, teacher_feat: Tensor, labels: Tensor) -> Tensor:
        losses = []
        for c in torch.unique(labels).tolist():  # per-class Python loop (a host sync per class)
            members = (labels == c).nonzero().squeeze(1)
            n = members.numel()
            if n < 2:
                continue
            s = F.normalize(student_feat[members].float(), dim=1)
            t = F.normalize(teacher_feat[members].float(), dim=1)
            losses.append(((t @ t.T - s @ s.T) ** 2).sum() / (n * n))
        return torch.stack(losses).mean() if losses else student_feat.new_zeros(())

    def step(self, x: Tensor, y: Tensor, *, accumulate: bool = True) -> Tensor:
        x, y = x.to(self.device), y.to(self.device)
        self.student.train()
        temperature = self.temperature
        with torch.no_grad():
            teacher_feat = self.teacher.forward_features(x)
            teacher_logits = self.teacher.classifier(teacher_feat)
        feat = self.student.forward_features(x)
        logits = self.student.classifier(feat)
        log_p_student = F.log_softmax(logits / temperature, dim=1)
        p_teacher = F.softmax(teacher_logits / temperature, dim=1)
        kd = F.kl_div(log_p_student, p_teacher, reduction="sum") * temperature**2 / x.shape[0]
        squared_error = ((self.regressor(feat) - teacher_feat) ** 2).sum(1)
        sample = (squared_error / (teacher_feat**2).sum(1).clamp_min(1e-12)).mean()
        shape = self.class_loss(feat, teacher_feat, y)
        loss = self.sample_weight * sample + self.class_weight * shape
        if self.use_head:
            context = F.softmax(logits.detach() / temperature, dim=1) @ self.dictionary
            ce = F.cross_entropy(self.head(torch.cat([feat, context], dim=1)), y)
            loss = loss + self.kd_weight * (ce + kd)
        else:
            loss = loss + self.kd_weight * kd
        if accumulate:
            teacher_prob = F.softmax(teacher_logits / temperature, dim=1)
            detached = feat.detach()
            for i in range(x.shape[0]):  # per-sample Python loop with host syncs
                c = int(y[i].item())
                w = teacher_prob[i, c].item()
                self.feature_sums[c] += w * detached[i]
                self.weight_counts[c] += w
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def synthetic_cifar(n: int, classes: int = 100, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random CIFAR-shaped uint8 images and labels (throughput only: the content does not matter)."""
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, classes, size=n).astype(np.int64))
    return images, labels

"""A fast-path CID epoch builds the same dictionary as the plain, reference-style path.

Fast path: TensorSplit batches + the training loop's step + the vectorised CIDDistiller. Plain path: a
torchvision DataLoader (PIL images, ToTensor, Normalize) over the same images in the same order, no
augmentation, and the reference-style step (per-class loop, per-sample dictionary update with host
syncs, CPU counters; benchmarks/fast_path_reference.py). Both start from the same weights and take the
same SGD steps, so the warm-up dictionary and the first post-warm-up dictionary must agree.
"""

from __future__ import annotations

import copy

import torch

from tests.fastpath.fastpath_helpers import (
    LR,
    MEAN,
    STD,
    FastPath,
    epoch_order,
    make_distiller,
    tiny_pair,
    tiny_split,
)

SEED, CLASSES = 3, 6


def test_fast_path_epochs_give_the_plain_path_dictionary(reference):
    split = tiny_split(classes=CLASSES)
    student, teacher = tiny_pair(CLASSES)
    distiller = make_distiller("cid", student, teacher, CLASSES)
    plain = reference.ReferenceStyleCID(
        *(copy.deepcopy(module) for module in (distiller.student, distiller.teacher, distiller.regressor,
                                                distiller.head)),
        num_classes=CLASSES, lr=LR)
    fast = FastPath(distiller)
    images, labels = split.images, split.labels
    for epoch in (0, 1):  # 0: the warm-up epoch that builds D; 1: trains g with it and builds the next D
        fast_losses = fast.epoch(split, SEED, epoch)
        order = epoch_order(len(split), SEED, epoch).tolist()
        loader = reference.reference_loader(images, labels, MEAN, STD, batch_size=64, num_workers=0,
                                            augment=False, order=order)
        plain.use_head = epoch >= 1
        plain.reset_accumulators()
        plain_losses = [float(plain.step(x, y)) for x, y in loader]
        torch.testing.assert_close(torch.tensor(fast_losses), torch.tensor(plain_losses), rtol=1e-5,
                                   atol=1e-5)
        expected = plain.next_dictionary()
        assert expected.abs().sum() > 0
        # Sums in another order (index_add vs one sample at a time, float64 CPU weight counters): observed
        # differences are below 1e-6 here.
        torch.testing.assert_close(distiller.next_dictionary, expected, rtol=0, atol=1e-5)
        plain.dictionary = expected  # what the plain path trains the next epoch with

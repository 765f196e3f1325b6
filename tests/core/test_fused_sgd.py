"""The fused SGD the loop uses on CUDA, run here through torch's CPU fused kernel (same code path in
torch.optim.SGD): both failures a GPU session found are reproduced on the CPU and must stay fixed.

1. CID's head g gets its first gradient after the warm-up epochs; torch's fused step then sees some
   parameters with a momentum buffer and some without and raised "expected Tensor ... got NoneType".
2. fp16 + GradScaler: the first steps are skipped for inf gradients, the lazily allocated buffers were
   left uninitialised, and the first real step made the weights NaN.
build_optimizer now gives every parameter a zero buffer up front, which must change no number.
"""

from __future__ import annotations

import copy

import torch

from cidpipe.train_config import OptimConfig
from cidpipe.training.schedule import build_optimizer, ensure_momentum_buffers
from cidpipe.training.step import train_step
from tests.fastpath.fastpath_helpers import LR, FastPath, make_distiller, tiny_pair, tiny_split

CLASSES = 6


def test_fused_sgd_crosses_the_warm_up_like_foreach():
    split = tiny_split(classes=CLASSES)
    student, teacher = tiny_pair(CLASSES)
    distiller = make_distiller("cid", student, teacher, CLASSES)
    initial_head = distiller.head.weight.detach().clone()
    fused = FastPath(copy.deepcopy(distiller), fused=True)
    plain = FastPath(distiller, fused=False)
    for epoch in (0, 1):  # epoch 0 is the warm-up (g untouched), epoch 1 trains g for the first time
        fused_losses = torch.tensor(fused.epoch(split, seed=1, epoch=epoch))
        plain_losses = torch.tensor(plain.epoch(split, seed=1, epoch=epoch))
        torch.testing.assert_close(fused_losses, plain_losses, rtol=1e-5, atol=1e-5)
    assert not torch.equal(fused.distiller.head.weight, initial_head), "g was never trained"
    torch.testing.assert_close(fused.distiller.head.weight, plain.distiller.head.weight, rtol=1e-5, atol=1e-6)


def _fp16_scaled_losses(fused: bool, steps: int = 12) -> list[float]:
    split = tiny_split(n=512, classes=CLASSES)
    student, teacher = tiny_pair(CLASSES)
    distiller = make_distiller("cid", student, teacher, CLASSES)
    distiller.on_epoch_start(0)
    distiller.on_epoch_end(0)
    distiller.on_epoch_start(1)
    distiller.train()
    optimizer = build_optimizer(distiller.param_groups(5e-4), OptimConfig(), LR, "cpu", fused=fused)
    scaler = torch.amp.GradScaler("cpu")  # starts at 2**16: the first steps overflow and are skipped
    autocast = torch.autocast("cpu", dtype=torch.float16)
    generator = torch.Generator().manual_seed(0)
    batches = [batch for _ in range(2)
               for batch in split.batches(64, shuffle=True, augment=False, generator=generator)]
    losses = []
    for x, y in batches[:steps]:
        losses.append(float(train_step(distiller, optimizer, autocast, scaler, x, y).loss.detach()))
    assert scaler.get_scale() < 2.0**16, "no step overflowed: the skipped-first-step case was not exercised"
    return losses


def test_fused_sgd_with_grad_scaler_stays_finite_and_equals_foreach():
    fused, plain = _fp16_scaled_losses(fused=True), _fp16_scaled_losses(fused=False)
    assert all(map(torch.isfinite, torch.tensor(fused))), fused
    torch.testing.assert_close(torch.tensor(fused), torch.tensor(plain), rtol=1e-4, atol=1e-4)


def test_momentum_buffers_are_restored_after_loading_an_old_state():
    head, body = torch.nn.Linear(3, 2), torch.nn.Linear(2, 3)
    optimizer = build_optimizer([{"params": list(body.parameters()) + list(head.parameters())}],
                                OptimConfig(), 0.1, "cpu")
    state = optimizer.state_dict()
    for index in (2, 3):  # as saved before the head's first step: no buffer for its weight and bias
        del state["state"][index]
    optimizer.load_state_dict(state)
    assert optimizer.state[head.weight].get("momentum_buffer") is None
    ensure_momentum_buffers(optimizer)
    assert torch.equal(optimizer.state[head.weight]["momentum_buffer"], torch.zeros_like(head.weight))

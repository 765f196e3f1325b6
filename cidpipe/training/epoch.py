"""One epoch: its learning rate, the method's epoch hooks, the training steps and the epoch's record.

Metrics are summed on the device; the host reads them once per ``SYNC_EVERY`` rounds (and at the end),
which is also when a NaN/inf loss is noticed. Under DDP each rank takes every world-th batch, in whole
rounds, so every rank meets each collective.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from cidpipe.data.base import DatasetBundle
from cidpipe.data.split import Split
from cidpipe.errors import ConfigError, TrainingDiverged
from cidpipe.train_config import OptimConfig
from cidpipe.training import distributed
from cidpipe.training.engine import Engine, RunSettings
from cidpipe.training.progress import FitProgress
from cidpipe.training.schedule import learning_rate, set_learning_rate
from cidpipe.training.step import train_step
from cidpipe.training.validation import validate

# Host synchronisation (reading the loss) happens once per this many steps, not every step.
SYNC_EVERY = 20


@dataclass(frozen=True)
class EpochPlan:
    """Batches per epoch, and how many of them are trained (whole rounds of ``world`` under DDP)."""

    steps_per_epoch: int
    trained_steps: int

    @classmethod
    def of(cls, num_samples: int, run: RunSettings, world: int) -> EpochPlan:
        steps = math.ceil(num_samples / run.batch_size)
        trained = distributed.steps_this_epoch(steps, world)
        if trained == 0:
            raise ConfigError(
                f"{run.label}: {steps} training batch(es) of {run.batch_size} cannot feed {world} "
                "processes; lower data.batch_size or the number of processes"
            )
        return cls(steps, trained)


@dataclass
class EpochTotals:
    """Sample-weighted sums of the loss and its parts, correct predictions and samples seen."""

    correct: torch.Tensor
    seen: torch.Tensor
    sums: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def zeros(cls, device: str) -> EpochTotals:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device))

    def add(self, loss: torch.Tensor, out: Any, y: torch.Tensor) -> None:
        for name, value in {"loss": loss, **out.parts}.items():
            self.sums[name] = self.sums.get(name, 0) + value.detach().float() * y.numel()
        self.correct += (out.logits.detach().argmax(1) == y).sum()
        self.seen += y.numel()

    def summed_over_ranks(self) -> EpochTotals:
        """The totals over all ranks' samples (one collective; the same object for a single process)."""
        if not distributed.is_distributed():
            return self
        names = sorted(self.sums)
        values = [self.sums[name].float() for name in names] + [self.correct.float(), self.seen.float()]
        packed = torch.stack(values)
        distributed.all_reduce_sum_([packed])
        return EpochTotals(packed[-2], packed[-1], dict(zip(names, packed[: len(names)], strict=True)))


def run_epoch(
    engine: Engine,
    bundle: DatasetBundle,
    cfg: OptimConfig,
    run: RunSettings,
    epoch: int,
    plan: EpochPlan,
    progress: FitProgress,
) -> dict[str, Any]:
    """Train epoch ``epoch`` (0-based), validate, and return its history record."""
    began = time.perf_counter()
    lr = learning_rate(cfg, run.base_lr, epoch)
    set_learning_rate(engine.optimizer, lr)
    distiller = engine.distiller
    distiller.on_epoch_start(epoch)
    distiller.train()
    totals = _train_steps(engine, bundle.train, run, epoch, plan, progress)
    distiller.on_epoch_end(epoch)  # on the unwrapped module; collective for CID under DDP
    distiller.eval()
    totals = totals.summed_over_ranks()
    val_top1 = validate(engine, bundle.val, run.eval_batch_size)
    means = {name: (total / totals.seen).item() for name, total in totals.sums.items()}
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": means.pop("loss"),
        "train_top1": 100.0 * (totals.correct / totals.seen).item(),
        "val_top1": val_top1,
        "seconds": round(time.perf_counter() - began, 3),
        "parts": means,
    }


def _train_steps(
    engine: Engine, train: Split, run: RunSettings, epoch: int, plan: EpochPlan, progress: FitProgress
) -> EpochTotals:
    trained_steps, rank, world = plan.trained_steps, engine.rank, engine.world
    # The data order of epoch e depends only on (seed, e): a resumed run sees the same batches.
    generator = torch.Generator().manual_seed(run.seed * 100_003 + epoch)
    totals = EpochTotals.zeros(engine.device)
    finite = torch.ones((), dtype=torch.bool, device=engine.device)
    reuse = run.reuse_teacher_outputs
    batches = train.batches(run.batch_size, shuffle=True, augment=run.augment, device=engine.device,
                            generator=generator, drop_last=False, with_index=reuse)
    for step, batch in enumerate(batches):
        if step >= trained_steps:
            break
        if step % world != rank:
            continue
        x, y = engine.prepare(batch[0]), batch[1]
        out = train_step(engine.step_forward, engine.optimizer, engine.amp, engine.scaler, x, y,
                         batch[2] if reuse else None)
        loss = out.loss.detach().float()
        finite &= torch.isfinite(loss)
        totals.add(loss, out, y)
        # Counted in rounds (one step per rank each), so every rank meets this collective.
        round_done = step // world + 1
        if round_done % SYNC_EVERY == 0 or round_done == trained_steps // world:
            stop_if_diverged(distributed.all_true(finite), run, epoch, step)
            progress.step(epoch, step, (totals.sums["loss"] / totals.seen).item())
    stop_if_diverged(distributed.all_true(finite), run, epoch, plan.steps_per_epoch)
    return totals


def stop_if_diverged(finite: torch.Tensor, run: RunSettings, epoch: int, step: int) -> None:
    if not bool(finite):
        where = f"epoch {epoch + 1}, near step {step + 1}"
        kept = (
            f"the last good checkpoint is kept at {run.checkpoint_path}"
            if run.checkpoint_path.is_file()
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"{run.label}: loss became NaN/inf at {where}; {kept}. "
            "Lower the learning rate or check the inputs/teacher weights."
        )

"""The one training loop: any Distiller (``ce`` for a teacher, kd/fitnet/dkd/cid for a student).

No method is special-cased here: the loop calls ``forward``, ``on_epoch_start``/``on_epoch_end`` and
``predict``; a method's state (CID's dictionary) lives in its buffers and so in its state_dict.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cidpipe.data.base import DatasetBundle
from cidpipe.errors import ConfigError, TrainingDiverged
from cidpipe.train_config import OptimConfig
from cidpipe.training import distributed
from cidpipe.training.checkpoint import load_checkpoint, save_checkpoint
from cidpipe.training.evaluate import top1_accuracy
from cidpipe.training.schedule import (
    build_optimizer,
    ensure_momentum_buffers,
    learning_rate,
    set_learning_rate,
)
from cidpipe.training.step import cache_teacher_outputs, compiled_step, train_step

# Host synchronisation (reading the loss) happens once per this many steps, not every step.
SYNC_EVERY = 20


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_top1: float
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    seconds: float = 0.0


@dataclass
class RunSettings:
    device: str
    seed: int
    batch_size: int
    eval_batch_size: int
    base_lr: float
    checkpoint_path: Path
    resume: bool = True
    label: str = "train"
    augment: bool = True
    # distill.reuse_teacher_outputs: teacher outputs computed once per sample (see step.py).
    reuse_teacher_outputs: bool = False


def autocast_context(cfg: OptimConfig, device: str):
    mode = cfg.amp
    if mode == "auto":
        mode = "bf16" if device.startswith("cuda") else "off"
    if mode == "off":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" and device.startswith("cuda") else None
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype), scaler


def fit(
    distiller: torch.nn.Module,
    bundle: DatasetBundle,
    cfg: OptimConfig,
    run: RunSettings,
    console: Console | None = None,
) -> FitResult:
    console = console or Console(stderr=True)
    device = run.device
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.startswith("cuda")
    distiller.to(device)
    if channels_last:
        distiller.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(distiller.param_groups(cfg.weight_decay), cfg, run.base_lr, device)
    find_unused = bool(getattr(distiller, "ddp_find_unused_parameters", False))
    train_module = distributed.wrap(distiller, device, find_unused_parameters=find_unused)
    step_forward = compiled_step(train_module, cfg, device)
    amp, scaler = autocast_context(cfg, device)
    reuse = run.reuse_teacher_outputs
    if reuse:
        cache_teacher_outputs(distiller, bundle.train, run.device, run.eval_batch_size, amp, channels_last,
                              console, label=run.label, augmented=run.augment)

    start_epoch, best_state, best_epoch, best_val, history, resumed = 0, None, -1, -1.0, [], None
    if run.resume and run.checkpoint_path.is_file():
        state = load_checkpoint(run.checkpoint_path)
        distiller.load_state_dict(state["distiller"])
        optimizer.load_state_dict(state["optimizer"])
        ensure_momentum_buffers(optimizer)  # a checkpoint from before the head's first step lacks its buffer
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best_epoch, best_val = state["epoch"], state["best_epoch"], state["best_val_top1"]
        best_state, history, resumed = state["best_state"], list(state["history"]), state["epoch"]
        if distributed.rank_and_world()[0] == 0:
            console.print(f"[cyan]{run.label}[/]: resuming from the checkpoint after epoch {start_epoch}")

    rank, world = distributed.rank_and_world()
    steps_per_epoch = math.ceil(len(bundle.train) / run.batch_size)
    # Under DDP every rank takes the same number of steps: whole rounds of `world` batches only.
    trained_steps = distributed.steps_this_epoch(steps_per_epoch, world)
    if trained_steps == 0:
        raise ConfigError(
            f"{run.label}: {steps_per_epoch} training batch(es) of {run.batch_size} cannot feed {world} "
            "processes; lower data.batch_size or the number of processes"
        )
    began = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=rank != 0,
        transient=False,
    )
    with progress:
        task = progress.add_task(
            run.label, total=cfg.epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch, info=""
        )
        for epoch in range(start_epoch, cfg.epochs):
            epoch_began = time.perf_counter()
            lr = learning_rate(cfg, run.base_lr, epoch)
            set_learning_rate(optimizer, lr)
            distiller.on_epoch_start(epoch)
            distiller.train()
            # The data order of epoch e depends only on (seed, e): a resumed run sees the same batches.
            generator = torch.Generator().manual_seed(run.seed * 100_003 + epoch)
            sums: dict[str, torch.Tensor] = {}
            correct = torch.zeros((), device=device)
            seen = torch.zeros((), device=device)
            finite = torch.ones((), dtype=torch.bool, device=device)
            batches = bundle.train.batches(
                run.batch_size,
                shuffle=True,
                augment=run.augment,
                device=device,
                generator=generator,
                drop_last=False,
                with_index=reuse,
            )
            for step, batch in enumerate(batches):
                if step >= trained_steps:
                    break
                if step % world != rank:
                    continue
                x, y = batch[0], batch[1]
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out = train_step(step_forward, optimizer, amp, scaler, x, y, batch[2] if reuse else None)
                loss = out.loss.detach().float()
                finite &= torch.isfinite(loss)
                for name, value in {"loss": loss, **out.parts}.items():
                    sums[name] = sums.get(name, 0) + value.detach().float() * y.numel()
                correct += (out.logits.detach().argmax(1) == y).sum()
                seen += y.numel()
                # Counted in rounds (one step per rank each), so every rank meets this collective.
                round_done = step // world + 1
                if round_done % SYNC_EVERY == 0 or round_done == trained_steps // world:
                    _stop_if_diverged(distributed.all_true(finite), run, epoch, step)
                    progress.update(
                        task,
                        completed=epoch * steps_per_epoch + step + 1,
                        info=f"epoch {epoch + 1}/{cfg.epochs} loss {(sums['loss'] / seen).item():.3f}",
                    )
            _stop_if_diverged(distributed.all_true(finite), run, epoch, steps_per_epoch)
            distiller.on_epoch_end(epoch)  # on the unwrapped module; collective for CID under DDP
            distiller.eval()
            sums, correct, seen = _summed_over_ranks(sums, correct, seen)
            # Rank 0 alone validates and every rank takes its number, so best-epoch selection agrees.
            val_top1 = 0.0
            if rank == 0:
                val_top1 = top1_accuracy(
                    distiller.predict,
                    bundle.val,
                    device=device,
                    batch_size=run.eval_batch_size,
                    channels_last=channels_last,
                )
            val_top1 = distributed.broadcast_float(val_top1, device)
            means = {name: (total / seen).item() for name, total in sums.items()}
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": means.pop("loss"),
                "train_top1": 100.0 * (correct / seen).item(),
                "val_top1": val_top1,
                "seconds": round(time.perf_counter() - epoch_began, 3),
                "parts": means,
            }
            history.append(record)
            if val_top1 > best_val:  # model selection on the validation split only, never on test
                best_val, best_epoch = val_top1, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in distiller.state_dict().items()}
            progress.update(
                task,
                completed=(epoch + 1) * steps_per_epoch,
                info=f"epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.3f} val {val_top1:.1f}%",
            )
            if not console.is_terminal and rank == 0:
                console.print(
                    f"{run.label} epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f} "
                    f"train {record['train_top1']:.1f}% val {val_top1:.2f}% ({record['seconds']:.1f}s)"
                )
            if rank == 0:
                save_checkpoint(
                    run.checkpoint_path,
                    {
                        "epoch": epoch + 1,
                        "distiller": distiller.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "best_state": best_state,
                        "best_epoch": best_epoch,
                        "best_val_top1": best_val,
                        "history": history,
                    },
                )
    assert best_state is not None
    if reuse:
        distiller.clear_teacher_cache()  # free the per-sample outputs; the caller only predicts from here
    return FitResult(
        best_state=best_state,
        best_epoch=best_epoch,
        best_val_top1=best_val,
        history=history,
        resumed_from_epoch=resumed,
        seconds=time.perf_counter() - began,
    )


def _summed_over_ranks(
    sums: dict[str, torch.Tensor], correct: torch.Tensor, seen: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Epoch metrics over all ranks' samples (one collective; a no-op for a single process)."""
    if not distributed.is_distributed():
        return sums, correct, seen
    names = sorted(sums)
    packed = torch.stack([sums[name].float() for name in names] + [correct.float(), seen.float()])
    distributed.all_reduce_sum_([packed])
    totals = dict(zip(names, packed[: len(names)], strict=True))
    return totals, packed[-2], packed[-1]


def _stop_if_diverged(finite: torch.Tensor, run: RunSettings, epoch: int, step: int) -> None:
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

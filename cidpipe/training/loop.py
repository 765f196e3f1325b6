"""The one training loop: any Distiller (``ce`` for a teacher, kd/fitnet/dkd/cid for a student).

No method is special-cased here: the loop calls ``forward``, ``on_epoch_start``/``on_epoch_end`` and
``predict``; a method's state (CID's dictionary) lives in its buffers and so in its state_dict.

The pieces: engine.py sets up device, optimizer, DDP, AMP and compile; state.py holds what survives a
resume (progress, model selection, history) and its checkpoint; epoch.py trains one epoch; validation.py
validates it. Model selection (``train.select``) keeps the best validation epoch or the last one and
never looks at the test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console

from cidpipe.data.base import DatasetBundle
from cidpipe.train_config import OptimConfig
from cidpipe.training.engine import RunSettings, autocast_context, build_engine
from cidpipe.training.epoch import SYNC_EVERY, EpochPlan, run_epoch
from cidpipe.training.progress import FitProgress
from cidpipe.training.state import FitState, restore_fit_checkpoint, save_fit_checkpoint
from cidpipe.training.step import cache_teacher_outputs
from cidpipe.training.tracking import check_trackers_available, open_trackers
from cidpipe.training.validation import check_selection

# Imported from here by the stages, tests and benchmarks.
__all__ = ["SYNC_EVERY", "FitResult", "RunSettings", "autocast_context", "fit"]


@dataclass
class FitResult:
    """``best_*``: the epoch model selection kept (the best validation epoch, or the last one with
    ``select: last``); ``best_val_top1`` is None when there is no validation split."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_top1: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    seconds: float = 0.0


def fit(
    distiller: torch.nn.Module,
    bundle: DatasetBundle,
    cfg: OptimConfig,
    run: RunSettings,
    console: Console | None = None,
) -> FitResult:
    console = console or Console(stderr=True)
    check_selection(cfg, bundle.val, run.label)
    if run.tracking is not None:  # a missing tracker library is refused before any compute
        check_trackers_available(run.tracking.trackers)
    engine = build_engine(distiller, cfg, run.device, run.base_lr)
    if run.reuse_teacher_outputs:
        cache_teacher_outputs(distiller, bundle.train, run.device, run.eval_batch_size, engine.amp,
                              engine.channels_last, console, label=run.label, augmented=run.augment)
    state = FitState()
    if run.resume and run.checkpoint_path.is_file():
        state = restore_fit_checkpoint(run.checkpoint_path, distiller, engine.optimizer)
        if engine.rank == 0:
            console.print(f"[cyan]{run.label}[/]: resuming from the checkpoint after epoch "
                          f"{state.next_epoch}")
    plan = EpochPlan.of(len(bundle.train), run, engine.world)
    # Opened with the checkpoint's history, so a resumed fit's trackers hold each kept epoch exactly once.
    trackers = open_trackers(run.tracking, seed=run.seed, epochs=cfg.epochs, history=state.history,
                             checkpoint_path=run.checkpoint_path, rank=engine.rank, console=console)
    began = time.perf_counter()
    try:
        with FitProgress(console, run.label, cfg.epochs, plan.steps_per_epoch, state.next_epoch,
                         rank=engine.rank) as progress:
            for epoch in range(state.next_epoch, cfg.epochs):
                record = run_epoch(engine, bundle, cfg, run, epoch, plan, progress)
                state.history.append(record)
                state.select(cfg.select, record, distiller)
                state.next_epoch = epoch + 1
                if engine.rank == 0:
                    save_fit_checkpoint(run.checkpoint_path, state, distiller, engine.optimizer)
                    trackers.on_epoch(record)  # after the checkpoint: a tracked epoch is one a resume keeps
                # Reported once it is kept: an epoch whose line was printed is not trained again on resume.
                progress.epoch_done(record)
    finally:
        trackers.close()  # also on Ctrl-C / NaN: TensorBoard flushed, the MLflow run marked KILLED
    if run.reuse_teacher_outputs:
        distiller.clear_teacher_cache()  # free the per-sample outputs; the caller only predicts from here
    return FitResult(
        best_state=state.final_weights(distiller),
        best_epoch=state.selected_epoch,
        best_val_top1=state.selected_val_top1,
        history=state.history,
        resumed_from_epoch=state.resumed_from_epoch,
        seconds=time.perf_counter() - began,
    )

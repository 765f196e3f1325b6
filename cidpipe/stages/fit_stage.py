"""What the teacher and student stages share: fit one model per seed, evaluate the chosen checkpoint on the
test split(s), and hand the first seed's deployable model to the pipeline to publish."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from cidpipe.data.base import DatasetBundle
from cidpipe.manifest import StageWork
from cidpipe.modelio import model_spec, save_weights
from cidpipe.stages.contract import PUBLISHED_BY_RANK_ZERO, Built, StageOptions
from cidpipe.train_config import OptimConfig
from cidpipe.training import distributed
from cidpipe.training.accuracy import top1_accuracy
from cidpipe.training.loop import RunSettings, fit
from cidpipe.training.step import check_compile_device
from cidpipe.training.tracking import HISTORY_CSV, TrackingSpec


def place_on_device(bundle: DatasetBundle, recipe, options: StageOptions) -> DatasetBundle:
    """Keep tensor-sized splits on the training device (the fast path) when the recipe allows it."""
    from cidpipe.data.resident import place_split

    mode = recipe.data.device_resident
    bundle.train = place_split(bundle.train, options.device, mode)
    bundle.val = place_split(bundle.val, options.device, mode)
    return bundle


def warn_about_missing_classes(bundle: DatasetBundle, options: StageOptions) -> None:
    """Say so before training when val or test lacks classes: model selection and the reported top-1 would
    silently ignore them."""
    for split, names in bundle.classes_without_samples().items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        options.log.print(f"[yellow]warning[/]: the {split} split has no images of {len(names)} of "
                          f"{bundle.num_classes} classes ({shown}); its accuracy does not cover them",
                          highlight=False)


def evaluate_splits(predict: Callable, bundle: DatasetBundle, device: str, batch_size: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "test_top1": top1_accuracy(predict, bundle.test, device=device, batch_size=batch_size)
    }
    if bundle.extra_test:
        bias = {
            name: top1_accuracy(predict, split, device=device, batch_size=batch_size)
            for name, split in bundle.extra_test.items()
        }
        if "aligned" in bias and "conflicting" in bias:
            bias["gap"] = bias["aligned"] - bias["conflicting"]
        metrics["bias"] = bias
    return metrics


def summarise_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"seeds": per_seed}
    for key in ("val_top1", "test_top1"):
        values = [s[key] for s in per_seed if s.get(key) is not None]
        if not values:  # select: last without a validation split has no val_top1
            continue
        summary[f"{key}_mean"] = statistics.fmean(values)
        summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def fit_seeds(
    work: StageWork,
    bundle: DatasetBundle,
    optim: OptimConfig,
    recipe,
    *,
    arch: str,
    base_lr: float,
    make_distiller: Callable[[int], torch.nn.Module],
    options: StageOptions,
    reuse_teacher_outputs: bool = False,
    source: dict[str, Any] | None = None,
) -> Built | None:
    """Fit one model per seed in ``work``; what rank 0 publishes (None on the other DDP ranks).

    ``make_distiller(seed)`` builds a freshly initialised distiller under that seed; ``source`` is where the
    model came from (cidpipe.models.sources), recorded in the published model spec. Under torchrun every
    rank trains (DDP); rank 0 alone evaluates the test splits, and the pipeline publishes what it returns
    while the other ranks wait for it.
    """
    # What both training stages take from the recipe alike: batch sizes, augmentation, trackers.
    batch_size, eval_batch_size = recipe.data.batch_size, recipe.data.eval_batch_size
    augment, trackers = recipe.data.augment, tuple(recipe.report.trackers)
    device = distributed.init_from_env(options.device)
    rank = distributed.rank_and_world()[0]
    check_compile_device(optim, device)
    run_dir = work.stage_dir.parent
    # history.csv is always written (in the stage, published with it); TensorBoard / MLflow logs go to
    # runs/<name>/tracking/<stage>/, outside the stage directory that publishing replaces.
    tracking = TrackingSpec(
        history_csv=work.path(HISTORY_CSV),
        log_dir=run_dir / "tracking" / work.stage,
        trackers=trackers,
        tags={"run": run_dir.name, "stage": work.stage, "stage_id": work.id},
    )
    per_seed: list[dict[str, Any]] = []
    published: dict[str, Any] = {}
    for index, seed in enumerate(optim.seeds):
        torch.manual_seed(seed)
        distiller = make_distiller(seed)
        label = f"{work.stage} {arch}" + (f" seed {seed}" if len(optim.seeds) > 1 else "")
        run = RunSettings(
            device=device,
            seed=seed,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            base_lr=base_lr,
            checkpoint_path=work.path(f"checkpoints/seed{seed}.pt"),
            resume=options.resume,
            label=label,
            augment=augment,
            reuse_teacher_outputs=reuse_teacher_outputs,
            tracking=tracking,
        )
        result = fit(distiller, bundle, optim, run, console=options.log)
        if rank != 0:
            continue
        distiller.load_state_dict(result.best_state)
        distiller.eval()
        metrics = {
            "seed": seed,
            "val_top1": result.best_val_top1,
            "best_epoch": result.best_epoch,
            **evaluate_splits(distiller.predict, bundle, device, eval_batch_size),
            "train_seconds": round(result.seconds, 2),
        }
        per_seed.append(metrics)
        if index == 0:  # the first seed's model is the one the later stages consume
            deployable = distiller.deployable().cpu().eval()
            save_weights(deployable, work.path("model.safetensors"))
            work.add_artifact("model", "model.safetensors", format="torch")
            params = sum(p.numel() for p in deployable.parameters())
            published = {
                "history": result.history,
                "params": params,
                "spec": model_spec(arch, bundle, distiller.deployment_spec(), params, source=source),
            }
    if rank != 0:
        return PUBLISHED_BY_RANK_ZERO
    work.add_artifact("history", HISTORY_CSV)  # one row per seed and epoch: loss parts, top-1, LR, time
    metrics = {
        **{k: v for k, v in per_seed[0].items() if k != "seed"},
        "params": published["params"],
        "history": published["history"],
        "data": bundle.describe(),
    }
    if len(per_seed) > 1:
        metrics.update(summarise_seeds(per_seed))
    return Built(metrics, model=published["spec"], device=device)

#!/usr/bin/env python
"""Bring-your-own-model transfer: a student pretrained from a weights file vs the same student from scratch.

Both students are distilled with CID from the same teacher on the same small image-folder task, with the
same epochs, LR schedule, batch size and seeds; the only difference is ``student.model.weights``.

There are no ImageNet weights offline, so the "pretrained weights file" is made here, honestly:

* source task: Fashion-MNIST classes 0-5 (t-shirt/top, trouser, pullover, dress, coat, sandal), trained with
  plain cross-entropy in plain torch (not through cidpipe), saved with ``torch.save(model.state_dict())``
  -- what a user bringing their own trained model would hand to cidpipe;
* target task: the disjoint classes 6-9 (shirt, sneaker, bag, ankle boot) as a PNG image folder with
  train/ val/ test/ class folders: a small training set, a small validation set (model selection), and the
  full official test images of those four classes.

The source head has 6 classes and the target 4, so cidpipe loads the body and re-initialises the head,
the realistic case for a model pretrained elsewhere. The pretrained file is trained once with seed 0: the
student seeds then vary the head initialisation and the data order (from scratch: the whole init).

    .venv/bin/python benchmarks/bench_byom_pretrained.py --work /tmp/byom_pretrained

Prints a Markdown table of the student test top-1 per seed and mean ± std.

Why the student is cidpipe's ``resnet8`` and not a timm edge net: at 32 px, timm's ``lcnet_050`` and
``mobilenetv3_small_050`` (stride 32, so 1x1 maps in their last stages) did not learn the source task in
this budget -- 45 % top-1 on 6 classes after 8 epochs (AdamW 2e-3), chance-level after 2-4 epochs with SGD
0.1 or AdamW -- so a "pretrained" file from them would be no pretraining at all. ResNet-8 keeps 8x8 maps.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
CLASS_NAMES = ("t-shirt_top", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle_boot")
SOURCE_CLASSES = (0, 1, 2, 3, 4, 5)
TARGET_CLASSES = (6, 7, 8, 9)
INPUT_SIZE = 32
STUDENT_ARCH = "resnet8"  # cidpipe's CIFAR ResNet-8; see the docstring for why not a timm edge net
TEACHER_ARCH = "resnet14"


# --------------------------------------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    """The array in a gzipped IDX file (big-endian header: magic, then one uint32 per dimension)."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"no Fashion-MNIST IDX files in {root}: apt-get install dataset-fashion-mnist, "
                 "or pass --fashion-dir")
    return {
        split: (read_idx(root / f"{prefix}-images-idx3-ubyte.gz"),
                read_idx(root / f"{prefix}-labels-idx1-ubyte.gz"))
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }


def per_class_indices(labels: np.ndarray, classes, start: int, count: int | None, seed: int) -> np.ndarray:
    """``count`` indices per class (all when None) from a seeded shuffle, skipping the first ``start``.

    The skip keeps the target's train and val images disjoint: both come from the official train split.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in classes:
        members = rng.permutation(np.flatnonzero(labels == cls))
        chosen.append(members[start:] if count is None else members[start:start + count])
    return np.concatenate(chosen)


def write_png_folder(folder: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
    """One PNG per image under folder/<class name>/; grayscale files, cidpipe decodes them as RGB."""
    from PIL import Image

    for index in indices:
        target = folder / CLASS_NAMES[labels[index]]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index], mode="L").save(target / f"{index:05d}.png")


def build_target_folder(root: Path, data, train_per_class: int, val_per_class: int) -> dict[str, int]:
    """train/ val/ test/ of the target classes; the test split is every official test image of them."""
    wanted = {"train_per_class": train_per_class, "val_per_class": val_per_class}
    if (root / "DONE").is_file():  # rebuilt only when missing, so reruns hit cidpipe's stage cache
        return check_same(json.loads((root / "DONE").read_text()), wanted, root)
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    pick = per_class_indices
    splits = {
        "train": (train_x, train_y, pick(train_y, TARGET_CLASSES, 0, train_per_class, seed=1)),
        "val": (train_x, train_y, pick(train_y, TARGET_CLASSES, train_per_class, val_per_class, seed=1)),
        "test": (test_x, test_y, pick(test_y, TARGET_CLASSES, 0, None, seed=1)),
    }
    for name, (images, labels, indices) in splits.items():
        write_png_folder(root / name, images, labels, indices)
    counts = {**wanted, **{name: int(len(indices)) for name, (_, _, indices) in splits.items()}}
    (root / "DONE").write_text(json.dumps(counts))
    return counts


def check_same(recorded: dict, wanted: dict, what: Path) -> dict:
    """``recorded`` when it was built with the ``wanted`` settings; otherwise stop (stale results)."""
    stale = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
    if stale:
        sys.exit(f"{what} was built with other settings {stale} (recorded, asked); use another --work")
    return recorded


# ---------------------------------------------------------------------------------------- pretraining


def to_model_input(images: np.ndarray):
    """uint8 [N, 28, 28] -> float [N, 3, 32, 32] on the 0..1 scale, resized the way cidpipe's image folder
    decodes a PNG (PIL bilinear, grayscale replicated to RGB), so source and target images look alike."""
    import torch
    from PIL import Image

    resized = np.stack([
        np.asarray(Image.fromarray(img, mode="L").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR))
        for img in images
    ])
    tensor = torch.from_numpy(resized).float().div_(255.0).unsqueeze(1)
    return tensor.expand(-1, 3, -1, -1).contiguous()


def augment(batch):
    """Like cidpipe's default training augmentation, 4 px zero-pad random crop and horizontal flip; one crop
    offset per batch (cheap) and a flip per image."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = batch.shape
    padded = F.pad(batch, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2,))
    out = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def train_source_model(x, y, epochs: int, lr: float, batch_size: int, seed: int):
    """The student architecture trained with cross-entropy on the source task (SGD, per-step cosine)."""
    import torch

    from cidpipe.models.registry import build_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # see start_cidpipe
    torch.manual_seed(seed)
    model = build_model(STUDENT_ARCH, num_classes=len(SOURCE_CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            loss = torch.nn.functional.cross_entropy(model(augment(x[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"  pretrain epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.3f}", flush=True)
    return model.eval()


def accuracy(model, x, y, batch_size: int = 500) -> float:
    import torch

    with torch.no_grad():
        hits = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                   for i in range(0, len(x), batch_size))
    return 100.0 * hits / len(x)


def make_pretrained_file(path: Path, data, per_class: int, epochs: int) -> dict[str, float]:
    """Pretrain on the source classes and torch.save the model's own state dict; the source accuracy."""
    import torch

    wanted = {"source_per_class": per_class, "epochs": epochs}
    if path.is_file():  # kept between reruns: the same file keeps cidpipe's stage ids
        info = json.loads(path.with_suffix(".json").read_text())
        return check_same(info, wanted, path)
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    idx = per_class_indices(train_y, SOURCE_CLASSES, 0, per_class, seed=2)
    test_idx = per_class_indices(test_y, SOURCE_CLASSES, 0, None, seed=2)
    x = to_model_input(train_x[idx])
    # The source statistics, as data.mean/std: auto computes them for the target: each task normalised by
    # its own training images, as a user's pretraining and fine-tuning would be.
    mean, std = x.mean().item(), x.std().item()
    norm = lambda t: (t - mean) / std  # noqa: E731
    started = time.time()
    model = train_source_model(norm(x), torch.from_numpy(train_y[idx].astype(np.int64)), epochs,
                               lr=0.05, batch_size=64, seed=0)
    info = {
        **wanted,
        "source_images": int(len(idx)),
        "source_test_top1": accuracy(model, norm(to_model_input(test_x[test_idx])),
                                     torch.from_numpy(test_y[test_idx].astype(np.int64))),
        "seconds": round(time.time() - started, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(info))
    return info


# ------------------------------------------------------------------------------------------- recipes


def base_recipe(name: str, data_root: Path, args) -> dict:
    """Everything both students share; quantize/export/bench/gate/report are off (accuracy only)."""
    student_train = {"epochs": args.epochs, "optimizer": "sgd", "lr": args.lr, "schedule": "cosine",
                     "warmup_epochs": 1, "seeds": args.seeds}
    return {
        "name": name,
        "device": "cpu",
        "data": {"name": "imagefolder", "root": str(data_root), "input_size": INPUT_SIZE,
                 "mean": "auto", "std": "auto", "batch_size": 64},
        "teacher": {"model": {"arch": TEACHER_ARCH},
                    "train": {"epochs": args.teacher_epochs, "lr": 0.05, "schedule": "cosine", "seeds": [0]}},
        "student": {"model": {"arch": STUDENT_ARCH}, "train": student_train},
        "distill": {"method": "cid", "cid": {"warmup_epochs": args.cid_warmup}},
        **{section: {"enabled": False} for section in ("quantize", "export", "bench", "gate", "report")},
    }


def write_recipe(path: Path, recipe: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def start_cidpipe(verb: str, recipe: Path, out: Path, log: Path) -> tuple[subprocess.Popen, float, Path]:
    """Start one cidpipe verb with its output in ``log``: (process, start time, log)."""
    command = [sys.executable, "-m", "cidpipe", verb, str(recipe), "--out", str(out), "--device", "cpu"]
    print("$", " ".join(command), flush=True)
    # One intra-op thread: on a shared CPU two torch threads spin-wait on each other, and an epoch of a
    # small student took 13-32 s instead of 1.1 s (measured here, load average 8).
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with log.open("w") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    return process, time.time(), log


def wait_cidpipe(job: tuple[subprocess.Popen, float, Path]) -> float:
    """The wall seconds of a started verb; a failure stops the benchmark."""
    process, started, log = job
    if process.wait() != 0:
        sys.exit(f"{' '.join(process.args)} failed (exit {process.returncode}); see {log}")
    return time.time() - started


def read_metrics(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text())["metrics"]


def per_seed_top1(metrics: dict) -> dict[int, float]:
    """seed -> test top-1 from a student manifest (one seed: the top-level metrics)."""
    if "seeds" in metrics:
        return {int(s["seed"]): float(s["test_top1"]) for s in metrics["seeds"]}
    return {0: float(metrics["test_top1"])}


# -------------------------------------------------------------------------------------------- report


def mean_std(values: list[float], signed: bool = False) -> str:
    """Mean ± sample standard deviation (n - 1), as cidpipe's manifests report it."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    mean = f"{statistics.fmean(values):+.2f}" if signed else f"{statistics.fmean(values):.2f}"
    return f"{mean} ± {spread:.2f}"


def markdown_table(teacher_top1: float, results: dict[str, dict[int, float]], seeds: list[int]) -> str:
    header = "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |"
    lines = [header, "|---|" + "---:|" * (len(seeds) + 1)]
    lines.append(f"| teacher ({TEACHER_ARCH}, CE, trained once) | "
                 + " | ".join([f"{teacher_top1:.2f}"] + [""] * (len(seeds) - 1)) + f" | {teacher_top1:.2f} |")
    for label, by_seed in results.items():
        values = [by_seed[s] for s in seeds]
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {mean_std(values)} |")
    names = list(results)
    diffs = [results[names[1]][s] - results[names[0]][s] for s in seeds]
    lines.append("| pretrained − scratch (same seed) | " + " | ".join(f"{d:+.2f}" for d in diffs)
                 + f" | {mean_std(diffs, signed=True)} |")
    return "\n".join(lines)


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/byom_pretrained"))
    parser.add_argument("--fashion-dir", type=Path, default=FASHION_DIR)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--source-per-class", type=int, default=500)
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--teacher-epochs", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=20, help="student epochs (both variants)")
    parser.add_argument("--cid-warmup", type=int, default=5, help="CID warm-up epochs (below --epochs)")
    parser.add_argument("--lr", type=float, default=0.05, help="student SGD LR (both variants)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.time()
    work, out = args.work, args.work / "runs"
    work.mkdir(parents=True, exist_ok=True)
    data = load_fashion(args.fashion_dir)

    counts = build_target_folder(work / "target", data, args.train_per_class, args.val_per_class)
    print(f"target image folder {work / 'target'}: {counts}", flush=True)
    weights = work / "pretrained" / f"{STUDENT_ARCH}_fmnist0-5.pth"
    source = make_pretrained_file(weights, data, args.source_per_class, args.pretrain_epochs)
    print(f"pretrained file {weights}: {source}", flush=True)

    # The teacher is trained once and imported (weights given, head kept) by both student runs, so the two
    # students see the very same teacher.
    teacher_recipe = write_recipe(work / "teacher.yaml", base_recipe("byom_teacher", work / "target", args))
    teacher_seconds = wait_cidpipe(start_cidpipe("train", teacher_recipe, out, work / "teacher.log"))
    teacher_weights = out / "byom_teacher" / "teacher" / "model.safetensors"
    teacher_top1 = float(read_metrics(out / "byom_teacher" / "teacher")["test_top1"])

    # The two students are independent (one core each): run them side by side.
    jobs = {}
    for variant, student_weights in (("scratch", None), ("pretrained", weights)):
        recipe = base_recipe(f"byom_{variant}", work / "target", args)
        recipe["teacher"]["model"]["weights"] = str(teacher_weights)
        if student_weights is not None:
            recipe["student"]["model"]["weights"] = str(student_weights)
        path = write_recipe(work / f"{variant}.yaml", recipe)
        jobs[variant] = start_cidpipe("run", path, out, work / f"{variant}.log")
    seconds = {"teacher": teacher_seconds, **{variant: wait_cidpipe(job) for variant, job in jobs.items()}}
    results = {
        f"{STUDENT_ARCH} CID, from scratch": per_seed_top1(read_metrics(out / "byom_scratch" / "student")),
        f"{STUDENT_ARCH} CID, pretrained file (source: 6 classes, head reset)":
            per_seed_top1(read_metrics(out / "byom_pretrained" / "student")),
    }

    print()
    print(markdown_table(teacher_top1, results, args.seeds))
    print()
    print(f"- target: {counts}; source pretraining: {source}")
    print(f"- machine: {machine()}")
    print(f"- wall time: {time.time() - started:.0f} s (cidpipe: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")


if __name__ == "__main__":
    main()

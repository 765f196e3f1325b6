"""Multi-process distillation through the real torchrun: 2 gloo processes on CPU, the real CLI and stage.

What is checked, and why it is sound without comparing against a differently trained single process:
- rank_probe.py (the torchrun worker, which only observes) dumps after every CID epoch end what each
  rank holds. Under DDP the ranks must hold bitwise the same trainable parameters (same averaged
  gradients, same optimizer steps) and the same next dictionary (its sums are all-reduced), while their
  local, pre-all-reduce weight sums differ (each rank saw other batches).
- The dictionary weights w = softmax(z_t / T)[y] depend only on the frozen teacher and the data, not on
  the student, so the all-reduced per-class weight sums (rank 0's + rank 1's) must equal those one
  process computes over the epoch's batches in the loop's order (whole rounds of 2 batches): that
  proves the union of the ranks' batches is the single process's epoch, no batch twice, none lost.
- One student stage is published (no work directory left behind) and its dictionary is the one the
  ranks trained the best epoch with.
- `cidpipe distill --nproc 2` relaunches itself under torchrun and publishes the stage too.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cidpipe.config import load_recipe
from cidpipe.data.registry import load_dataset
from cidpipe.distill.losses import true_class_probability
from cidpipe.modelio import load_stage_model
from tests.conftest import json_reply, run_cli, tiny_recipe_dict

PROBE = Path(__file__).with_name("rank_probe.py")
WORLD = 2
DATA = {"name": "digits", "limit_train": 256, "input_size": 16, "batch_size": 64, "augment": False}
TRAIN = {"epochs": 2, "lr": 0.05, "schedule": "cosine"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """A recipe whose teacher is trained once, in a single process."""
    root = tmp_path_factory.mktemp("ddp")
    recipe = tiny_recipe_dict(
        root / "runs", data=DATA, teacher={"train": {**TRAIN, "epochs": 1}}, student={"train": TRAIN}
    )
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    done = run_cli("train", str(path), "--device", "cpu", timeout=120)
    assert done.returncode == 0, done.stderr
    return path


def _expected_weight_sums(recipe_path: Path, epoch: int) -> torch.Tensor:
    """Per-class sums of w over the batches one process trains in ``epoch`` (the loop's data order)."""
    recipe = load_recipe(str(recipe_path), [])
    bundle = load_dataset(recipe.data)
    teacher, _ = load_stage_model(recipe.run_dir() / "teacher")
    seed, batch_size = recipe.student.train.seeds[0], recipe.data.batch_size
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)  # as cidpipe.training.loop.fit
    whole_rounds = (math.ceil(len(bundle.train) / batch_size) // WORLD) * WORLD
    sums = torch.zeros(bundle.num_classes)
    batches = bundle.train.batches(batch_size, shuffle=True, augment=False, generator=generator)
    with torch.no_grad():
        for step, (x, y) in enumerate(batches):
            if step < whole_rounds:
                sums.index_add_(0, y, true_class_probability(teacher(x), y, recipe.distill.cid.temperature))
    return sums


@pytest.mark.timeout(150)
def test_torchrun_two_ranks_agree_and_publish_one_stage(teacher_run, tmp_path):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={WORLD}",
        f"--master-port={_free_port()}", str(PROBE), str(dumps),
        "distill", str(teacher_run), "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = teacher_run.parent / "runs" / "tiny"
    assert sorted(p.name for p in run_dir.iterdir()) == ["recipe.yaml", "student", "teacher"]
    manifest = json.loads((run_dir / "student" / "manifest.json").read_text())
    assert manifest["stage"] == "student" and manifest["digest"]

    for epoch in range(TRAIN["epochs"]):  # warm-up is 1 epoch: both epochs accumulate a dictionary
        rank0, rank1 = (torch.load(dumps / f"rank{r}-epoch{epoch}.pt", weights_only=True) for r in (0, 1))
        for name, value in rank0["parameters"].items():
            assert torch.equal(value, rank1["parameters"][name]), (epoch, name)
        assert torch.equal(rank0["next_dictionary"], rank1["next_dictionary"]), epoch
        assert rank0["next_dictionary"].abs().sum() > 0
        assert not torch.equal(rank0["local_weight_sum"], rank1["local_weight_sum"])
        torch.testing.assert_close(
            rank0["local_weight_sum"] + rank1["local_weight_sum"],
            _expected_weight_sums(teacher_run, epoch),
            atol=1e-4,
            rtol=1e-5,
        )

    best_epoch = manifest["metrics"]["best_epoch"]
    weights = load_file(run_dir / "student" / "model.safetensors")
    if manifest["model"]["head"]["head"] == "cid":
        trained_with = torch.load(dumps / f"rank0-epoch{best_epoch}.pt", weights_only=True)["dictionary"]
        assert torch.equal(weights["dictionary"], trained_with)
    else:  # the warm-up epoch won on validation: the plain student is published, without a dictionary
        assert best_epoch == 0 and "dictionary" not in weights


@pytest.mark.timeout(150)
def test_nproc_option_relaunches_under_torchrun(teacher_run, tmp_path):
    out = tmp_path / "out"
    teacher_dir = teacher_run.parent / "runs" / "tiny" / "teacher"
    done = run_cli(
        "distill", str(teacher_run), "--device", "cpu", "--nproc", "2", "--out", str(out),
        "--teacher", str(teacher_dir), "--json", timeout=140,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json_reply(done)  # one JSON document: only rank 0 printed
    assert (out / "tiny" / "student" / "manifest.json").is_file()
    assert json.loads((out / "tiny" / "student" / "manifest.json").read_text())["stage"] == "student"
    assert result
    assert not list((out / "tiny").glob(".*partial*"))

"""The CUDA training path: what the CPU tests cannot reach. Skipped where no CUDA device is visible.

CI never has a GPU; these run in a GPU session through benchmarks/gpu_session.sh (`pytest tests/gpu`).
They check that the device-side data path and the fast step do on CUDA what they do on the CPU (same
crops, same CID dictionary in fp32), that the fast step makes no host synchronisation, that bf16 / fp16
autocast and torch.compile train, and that a whole run on CUDA exports an ONNX graph that passes parity.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch

from cidpipe.data.augment import random_crop_flip
from cidpipe.train_config import OptimConfig
from cidpipe.training.loop import autocast_context
from cidpipe.training.schedule import build_optimizer
from cidpipe.training.step import compiled_step, train_step
from tests.conftest import run_cli
from tests.fastpath.fastpath_helpers import LR, FastPath, make_distiller, tiny_pair, tiny_split

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CLASSES = 6


@pytest.fixture
def exact_cuda():
    """fp32 everywhere: TF32 convolutions and matmuls off, deterministic cuDNN, restored afterwards."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def test_device_side_crops_on_cuda_equal_the_cpu_crops():
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    on_cpu = random_crop_flip(images, 4, True, torch.Generator().manual_seed(5))
    on_gpu = random_crop_flip(images.cuda(), 4, True, torch.Generator().manual_seed(5))
    assert torch.equal(on_gpu.cpu(), on_cpu)


def test_fp32_cuda_epochs_build_the_cpu_dictionary(exact_cuda):
    split = tiny_split(classes=CLASSES)
    student, teacher = tiny_pair(CLASSES)
    distiller = make_distiller("cid", student, teacher, CLASSES)
    on_gpu = FastPath(copy.deepcopy(distiller), device="cuda")  # same regressor and head initialisation
    on_cpu = FastPath(distiller)
    resident = split.to_device("cuda")
    for epoch in (0, 1):  # the warm-up epoch that builds D, then one that trains g with it
        cpu_losses = on_cpu.epoch(split, seed=3, epoch=epoch)
        gpu_losses = on_gpu.epoch(resident, seed=3, epoch=epoch)
        torch.testing.assert_close(torch.tensor(gpu_losses), torch.tensor(cpu_losses), rtol=1e-4, atol=1e-4)
        expected = on_cpu.distiller.next_dictionary
        assert expected.abs().sum() > 0
        torch.testing.assert_close(on_gpu.distiller.next_dictionary.cpu(), expected, rtol=1e-4, atol=1e-4)


def _fast_cid_step(amp: str, compile_mode: str | None = None):
    """The loop's CUDA step on a resident split with channels_last; returns (step, distiller, scaler)."""
    split = tiny_split(n=512, classes=CLASSES).to_device("cuda")
    student, teacher = tiny_pair(CLASSES)
    distiller = make_distiller("cid", student, teacher, CLASSES).cuda().to(memory_format=torch.channels_last)
    optim = OptimConfig(amp=amp, compile=compile_mode is not None, compile_mode=compile_mode or "default")
    optimizer = build_optimizer(distiller.param_groups(optim.weight_decay), optim, LR, "cuda")
    autocast, scaler = autocast_context(optim, "cuda")
    distiller.on_epoch_start(0)
    distiller.on_epoch_end(0)
    distiller.on_epoch_start(1)  # post-warm-up: every CID loss and the dictionary update are live
    distiller.train()
    forward = compiled_step(distiller, optim, "cuda")
    generator = torch.Generator().manual_seed(0)

    def batches():
        while True:
            yield from split.batches(64, shuffle=True, augment=True, device="cuda", generator=generator,
                                     drop_last=True)

    stream = batches()

    def step():
        x, y = next(stream)
        x = x.contiguous(memory_format=torch.channels_last)
        return train_step(forward, optimizer, autocast, scaler, x, y)

    return step, distiller, scaler


def test_fast_cid_step_never_synchronises_the_host():
    step, _, _ = _fast_cid_step("bf16")
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(5):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # Real syncs say "called a synchronizing CUDA operation"; the mode's prototype notice does not count.
    syncs = [str(w.message) for w in caught if "called a synchronizing" in str(w.message).lower()]
    assert syncs == [], syncs[:3]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_steps_train(amp):
    step, distiller, scaler = _fast_cid_step(amp)
    before = copy.deepcopy(distiller.student.state_dict())
    losses = torch.stack([step().loss.detach().float() for _ in range(40)])
    assert bool(torch.isfinite(losses).all()), losses
    assert losses[-10:].mean() < losses[:10].mean(), losses  # it learns the brightness-coded classes
    changed = [k for k, v in distiller.student.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "no student weight moved"
    if amp == "fp16":
        assert scaler is not None and 0 < scaler.get_scale() < float("inf")
    else:
        assert scaler is None  # bf16 has fp32's range: no loss scaling


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_step_trains_like_the_eager_one(mode):
    compiled, _, _ = _fast_cid_step("off", compile_mode=mode)
    eager, _, _ = _fast_cid_step("off")
    # clone(): a CUDA-graph replay overwrites the previous step's outputs.
    compiled_losses = torch.stack([compiled().loss.detach().clone() for _ in range(5)]).cpu()
    eager_losses = torch.stack([eager().loss.detach() for _ in range(5)]).cpu()
    # Same start, same batches; fused kernels and TF32 reorder sums, so close rather than equal.
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=2e-2, atol=2e-2)


def test_cuda_run_exports_an_onnx_graph_that_matches(write_recipe, tmp_path):
    recipe = write_recipe(export={"enabled": True, "targets": ["onnx"]})
    result = run_cli("run", str(recipe), "--device", "cuda", "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    student = json.loads(next((tmp_path / "runs").rglob("student/manifest.json")).read_text())
    assert student["env"]["device"].startswith("cuda"), student["env"]
    exported = json.loads(next((tmp_path / "runs").rglob("export/manifest.json")).read_text())
    parity = exported["metrics"]["parity"]
    # Trained on the GPU, exported and checked against PyTorch on the CPU: the stage's own tolerance.
    assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 100.0, parity


def test_cuda_graph_training_crosses_the_warm_up_in_the_real_loop(write_recipe, tmp_path):
    """The whole CLI with compile_mode reduce-overhead for the student: warm-up epoch, then CID proper
    (a recompilation and new graphs), full and tail batches, checkpoints; compared with the eager run."""
    recipe = write_recipe()
    graphs = ["--set", "student.train.compile=true", "--set", "student.train.compile_mode=reduce-overhead"]
    runs = {}
    for name, extra in {"eager": [], "graphs": graphs}.items():
        out = tmp_path / name
        result = run_cli("run", str(recipe), "--device", "cuda", "--out", str(out), *extra, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = json.loads(next(out.rglob("student/manifest.json")).read_text())["metrics"]
    for name, metrics in runs.items():
        history = metrics["history"]
        print(f"{name}: val {[round(h['val_top1'], 1) for h in history]}, "
              f"seconds {[h['seconds'] for h in history]}")
        assert len(history) == 4 and all(math.isfinite(h["train_loss"]) for h in history), history
    # Same seed and data; bf16 kernels differ between eager and compiled, so equal within a few points.
    assert runs["graphs"]["val_top1"] >= runs["eager"]["val_top1"] - 10.0, runs

"""What a manifest keeps is enough to reopen a timm/torchvision/python model in a fresh process (a real
child interpreter: the only place where nothing is registered or imported yet), and pretrained weights
that are not cached fail in one line instead of reaching the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from user_builders import PYTHON_BUILDER

from cidpipe.distill.deploy import CIDDeployable
from cidpipe.errors import ModelError
from cidpipe.modelio import model_spec, save_weights
from cidpipe.models.sources import build_from_config
from cidpipe.train_config import ModelConfig

CLASSES = 5
REOPEN = textwrap.dedent("""
    import json, sys
    import torch
    from cidpipe.modelio import build_from_spec, load_state_strict, load_weights

    for case in json.load(open(sys.argv[1])):
        module = build_from_spec(case["spec"]).eval()
        load_state_strict(module, load_weights(case["weights"]), case["weights"], case["spec"]["arch"])
        x = torch.load(case["input"], weights_only=True)
        with torch.no_grad():
            torch.save(module(x), case["output"])
""")


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def _saved_cases(tmp_path: Path) -> list[tuple[torch.Tensor, dict]]:
    """One saved stage model per source (the timm one inside a CID deployable): spec, weights, x, logits."""
    (tmp_path / "my_nets.py").write_text(PYTHON_BUILDER)
    bundle = SimpleNamespace(
        num_classes=CLASSES,
        class_names=[str(i) for i in range(CLASSES)],
        input_shape=(3, 32, 32),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    cases = []
    for index, cfg in enumerate(
        [
            ModelConfig(arch="timm:mobilenetv3_small_050", kwargs={"drop_rate": 0.1}),
            ModelConfig(arch="torchvision:mobilenet_v3_small", kwargs={"width_mult": 0.5}),
            ModelConfig(arch="python:my_nets:build", kwargs={"width": 6}),
        ]
    ):
        torch.manual_seed(index)
        model, source = build_from_config(cfg, CLASSES)
        head = {"head": "plain"}
        if index == 0:  # the spec's CID head is rebuilt around the adapter's feature_dim
            dim = model.feature_dim
            model = CIDDeployable(model, torch.randn(CLASSES, dim), 4.0, torch.nn.Linear(2 * dim, CLASSES))
            head = {"head": "cid", "temperature": 4.0, "feature_dim": dim, "num_classes": CLASSES}
        spec = json.loads(json.dumps(model_spec(cfg.arch, bundle, head, 0, source)))  # JSON-able as is
        assert spec["arch"] == cfg.arch and spec["kwargs"] == cfg.kwargs
        weights, x = tmp_path / f"m{index}.safetensors", torch.randn(2, 3, 32, 32)
        save_weights(model, weights)
        torch.save(x, tmp_path / f"x{index}.pt")
        with torch.no_grad():
            expected = model.eval()(x)
        cases.append(
            (
                expected,
                {
                    "spec": spec,
                    "weights": str(weights),
                    "input": str(tmp_path / f"x{index}.pt"),
                    "output": str(tmp_path / f"y{index}.pt"),
                },
            )
        )
    (tmp_path / "cases.json").write_text(json.dumps([c for _, c in cases]))
    return cases


def _assert_reopened(cases: list[tuple[torch.Tensor, dict]]) -> None:
    for expected, case in cases:
        torch.testing.assert_close(torch.load(case["output"], weights_only=True), expected, rtol=0, atol=0)


def test_a_manifest_spec_rebuilds_every_source(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = _saved_cases(tmp_path)
    monkeypatch.setattr(sys, "argv", ["reopen", str(tmp_path / "cases.json")])
    exec(REOPEN, {})  # the child's script, in this process (fast); the slow test runs it in a fresh one
    _assert_reopened(cases)


# Slow only because a fresh interpreter imports torch, torchvision and timm (10-30 s on a shared runner).
@pytest.mark.slow
def test_a_manifest_spec_rebuilds_every_source_in_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = _saved_cases(tmp_path)
    done = _run(REOPEN, str(tmp_path / "cases.json"), env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_reopened(cases)


def test_pretrained_weights_missing_from_an_empty_offline_cache_fail_in_one_line(tmp_path: Path, monkeypatch):
    from huggingface_hub import constants

    empty = tmp_path / "cache"
    empty.mkdir()
    for name, value in {
        "HF_HUB_OFFLINE": "1",
        "CIDPIPE_OFFLINE": "1",
        "HF_HOME": str(empty),
        "TORCH_HOME": str(empty),
    }.items():
        monkeypatch.setenv(name, value)
    # huggingface_hub read HF_HOME and HF_HUB_OFFLINE when it was imported (earlier in this process):
    # point its module-level settings where the variables above point.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(empty / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for arch in ("timm:mobilenetv3_small_050", "torchvision:mobilenet_v3_small"):
        with pytest.raises(ModelError) as err:
            build_from_config(ModelConfig(arch=arch, pretrained=True), 10)
        message = str(err.value)
        assert f"pretrained weights for {arch} are not in the local cache" in message, message
        assert "pass model.weights" in message and str(empty) in message and "\n" not in message
    assert not any(p.is_file() for p in empty.rglob("*"))


def test_pretrained_weights_whose_host_does_not_answer_fail_at_once_not_after_retries(tmp_path, monkeypatch):
    """A machine without a route to the weights' host: the error comes from a 3 s connect probe of the
    download host (here a loopback port nothing listens on), not after huggingface_hub's five retries."""
    import socket

    from huggingface_hub import constants

    from cidpipe.models.pretrained_cache import unreachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        listening = server.getsockname()[1]
        assert unreachable(f"http://127.0.0.1:{listening}") is None
    closed = f"http://127.0.0.1:{listening}"  # the socket is closed: connections are refused now
    from cidpipe.models.pretrained_cache import _PROXY_VARIABLES

    for name in ("CIDPIPE_OFFLINE", "HF_HUB_OFFLINE", *_PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    with pytest.raises(ModelError) as err:
        build_from_config(ModelConfig(arch="timm:mobilenetv3_small_050", pretrained=True), 10)
    message = str(err.value)
    assert f"127.0.0.1:{listening} unreachable" in message and "CIDPIPE_OFFLINE=1" in message, message
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # a proxy is the route: no direct probe
    assert unreachable(closed) is None

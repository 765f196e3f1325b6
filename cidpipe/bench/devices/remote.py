"""Bench an artifact on a device with the torch-free runtime (``python -m cidpipe_runtime``).

The very same runtime package that cidpipe uses locally is uploaded with the model and the evaluation
npz into a fresh per-run directory, run with the device's python, and the directory is removed again
whatever happens (``finally``), so a failed or timed-out run leaves nothing behind on the board.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cidpipe.bench.config import BenchConfig
from cidpipe.bench.devices.inventory import DeviceSpec, Inventory, load_inventory
from cidpipe.bench.devices.probe import BACKEND_MODULES, probe_python, require_modules
from cidpipe.bench.devices.ssh import SSH_CLIENT_FAILURE, SshTarget, last_line
from cidpipe.bench.devices.workspace import make_run_dir, remove_run_dir, upload
from cidpipe.errors import DeviceError, UsageError

RUNTIME_PACKAGE = "cidpipe_runtime"
def runtime_dir() -> Path:
    """The runtime package directory that is shipped to devices."""
    import cidpipe_runtime

    return Path(cidpipe_runtime.__file__).parent


def runtime_args(
    model: str, data: str, backend: str, bench: BenchConfig, provider: str | None = None
) -> list[str]:
    """The runtime's command-line arguments for one artifact and the recipe's bench protocol."""
    args = [
        "--model", model, "--data", data, "--backend", backend,
        "--batch-sizes", ",".join(str(size) for size in bench.batch_sizes),
        "--warmup-runs", str(bench.warmup_runs), "--warmup-seconds", str(bench.warmup_seconds),
        "--runs", str(bench.runs), "--min-seconds", str(bench.min_seconds),
        "--threads", str(bench.threads), "--cov-warning", str(bench.cov_warning),
    ]
    if provider:
        args += ["--provider", provider]
    if bench.max_eval_samples is not None:
        args += ["--max-samples", str(bench.max_eval_samples)]
    return args


def parse_runtime_output(device: DeviceSpec, completed: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The runtime's JSON document; its ``{"error": ...}`` becomes a one-line DeviceError."""
    lines = [line for line in completed.stdout.splitlines() if line.strip().startswith("{")]
    try:
        document = json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        if completed.returncode == SSH_CLIENT_FAILURE and not completed.stderr.strip():
            raise DeviceError(
                f"the SSH connection to {device.name} ({device.address}) was lost while cidpipe_runtime ran "
                "(ssh exit 255, no output): check the board is up and on the network, then bench it again"
            ) from exc
        detail = last_line(completed.stderr) or f"status {completed.returncode}, no output"
        raise DeviceError(f"cidpipe_runtime on {device.name} printed no result: {detail}") from exc
    where = f"cidpipe_runtime on {device.name} ({device.address})"
    if not isinstance(document, dict):
        raise DeviceError(
            f"{where} answered a JSON {type(document).__name__}, not a result object; check that "
            f"remote_python runs cidpipe's runtime (is another cidpipe_runtime on its path?)"
        )
    if "error" in document or completed.returncode != 0:
        error = " ".join(str(document.get("error", f"exit status {completed.returncode}")).split())
        raise DeviceError(f"{where} failed: {error}")
    problem = runtime_document_problem(document)
    if problem:
        raise DeviceError(
            f"{where} answered a result of the wrong shape ({problem}); check that remote_python runs "
            "the cidpipe_runtime uploaded by this cidpipe"
        )
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def runtime_document_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with a runtime result the bench would read (None when it has the expected shape)."""
    accuracy = document.get("accuracy")
    if not isinstance(accuracy, dict) or not _is_number(accuracy.get("top1")):
        return "no accuracy.top1"
    for key in ("top5", "agreement", "n"):
        if accuracy.get(key) is not None and not _is_number(accuracy[key]):
            return f"accuracy.{key} is not a number"
    latency = document.get("latency")
    if not isinstance(latency, list) or not latency:
        return "no latency entries"
    for entry in latency:
        if not isinstance(entry, dict):
            return "a latency entry is not an object"
        size = entry.get("batch_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            return "a latency entry has no positive batch_size"
        if not _is_number(entry.get("mean_ms")):
            return f"batch {size} has no mean_ms"
        bad = [key for key, value in entry.items() if value is not None and not _is_number(value)]
        if bad:
            return f"batch {size}: {bad[0]} is not a number"
    for key in ("model_bytes", "peak_rss_bytes", "threads"):
        if document.get(key) is not None and not _is_number(document[key]):
            return f"{key} is not a number"
    if document.get("provider") is not None and not isinstance(document["provider"], str):
        return "provider is not a string"
    if not isinstance(document.get("warnings", []), list):
        return "warnings is not a list"
    return None


def _check_inputs(model_path: Path, eval_npz: Path, backend: str, extra_files: Sequence[Path]) -> None:
    if backend not in BACKEND_MODULES:
        choices = " or ".join(BACKEND_MODULES)
        raise UsageError(f"unknown backend {backend!r} for a device bench; use {choices}")
    for path in (model_path, eval_npz, *extra_files):
        if not path.is_file():
            raise UsageError(f"{path} does not exist; run the export stage first")


def run_remote_bench(
    device: DeviceSpec,
    model_path: Path | str,
    eval_npz: Path | str,
    backend: str,
    bench: BenchConfig,
    *,
    provider: str | None = None,
    extra_files: Sequence[Path | str] = (),
) -> dict[str, Any]:
    """Accuracy + latency of one artifact on ``device``: the runtime's JSON plus a ``remote`` entry.

    ``extra_files`` travel next to the model (e.g. ONNX external-data files). A device of kind ``local``
    runs the same runtime in a subprocess here, so both paths measure with one protocol.
    """
    model_path, eval_npz = Path(model_path), Path(eval_npz)
    extras = [Path(path) for path in extra_files]
    _check_inputs(model_path, eval_npz, backend, extras)
    started = time.monotonic()
    if device.kind == "local":
        result = _run_local(device, model_path, eval_npz, backend, bench, provider)
        result["remote"] = {"device": device.name, "kind": "local", "address": device.address,
                            "python": sys.version.split()[0], "wall_s": round(time.monotonic() - started, 3)}
        return result
    with SshTarget(device) as target:
        probe = probe_python(device, ["numpy", BACKEND_MODULES[backend]], target)
        require_modules(device, probe, [BACKEND_MODULES[backend], "numpy"])
        run_dir = make_run_dir(target)
        try:
            upload(target, run_dir, [
                (runtime_dir(), RUNTIME_PACKAGE),
                (model_path, f"model/{model_path.name}"),
                *((path, f"model/{path.name}") for path in extras),
                (eval_npz, "eval.npz"),
            ])
            args = runtime_args(f"{run_dir}/model/{model_path.name}", f"{run_dir}/eval.npz", backend, bench,
                                provider)
            completed = target.run([device.remote_python, "-m", RUNTIME_PACKAGE, *args],
                                   env={"PYTHONPATH": run_dir}, what="cidpipe_runtime")
            result = parse_runtime_output(device, completed)
        finally:
            remove_run_dir(target, run_dir)
        if device.kind == "jetson":  # a board's speed depends on its power mode and clocks: record them
            from cidpipe.bench.devices.jetson import board_state

            result["board_state"] = board_state(target)
    result["remote"] = {"device": device.name, "kind": device.kind, "address": device.address,
                        "python": probe["python"], "wall_s": round(time.monotonic() - started, 3)}
    return result


def _run_local(device: DeviceSpec, model_path: Path, eval_npz: Path, backend: str, bench: BenchConfig,
               provider: str | None) -> dict[str, Any]:
    argv = [sys.executable, "-m", RUNTIME_PACKAGE,
            *runtime_args(str(model_path.resolve()), str(eval_npz.resolve()), backend, bench, provider)]
    with tempfile.TemporaryDirectory(prefix="cidpipe-local-bench-") as scratch:
        try:
            completed = subprocess.run(argv, capture_output=True, text=True, cwd=scratch,
                                       timeout=device.command_timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(
                f"cidpipe_runtime timed out after {device.command_timeout_s:.0f}s locally"
            ) from exc
    return parse_runtime_output(device, completed)


def list_devices(inventory: Inventory | None = None) -> list[dict[str, Any]]:
    """One row per device for ``cidpipe devices list`` (no connection is made)."""
    inventory = inventory or load_inventory()
    return [
        {"name": spec.name, "kind": spec.kind, "address": spec.address,
         "python": spec.remote_python if spec.kind != "local" else sys.executable,
         "workdir": spec.workdir if spec.kind != "local" else "-",
         "host_key_checking": {"yes": "strict", "accept-new": "accept-new (insecure opt-out)",
                               "no": "OFF (insecure opt-out)"}[spec.host_key_policy]
         if spec.kind != "local" else "-"}
        for spec in inventory.devices.values()
    ]

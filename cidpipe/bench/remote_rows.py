"""Bench rows measured on a device from the inventory (SSH / Jetson) rather than in this process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cidpipe_runtime.latency import STAT_KEYS, is_noisy, summarize
from cidpipe_runtime.ort_backend import EXACT_QDQ

from cidpipe.bench.devices.inventory import DeviceSpec, load_inventory
from cidpipe.bench.devices.remote import run_remote_bench
from cidpipe.bench.result import DEVICE_FAILURE, ArtifactSpec, BenchResult
from cidpipe.config import Recipe
from cidpipe.errors import CidpipeError, DeviceError, MissingDependency


def failure_kind(err: CidpipeError) -> str | None:
    """``"device"`` when the device could not be used (unreachable, host key, no python/ssh, garbage)."""
    return DEVICE_FAILURE if isinstance(err, (DeviceError, MissingDependency)) else None


def bench_remote(
    device_name: str, artifacts: list[ArtifactSpec], eval_npz: Path, recipe: Recipe,
    announce: Callable[[str], None] = lambda _: None,
) -> list[BenchResult]:
    """The rows of ``device_name``; ``announce`` is told each measurement as it starts."""
    device = load_inventory(recipe.bench.inventory).get_device(device_name)
    rows: list[BenchResult] = []
    for spec in artifacts:
        if spec.format.startswith("onnx"):
            announce(f"{spec.name} (onnxruntime on {device_name}, over SSH): copy, top-1 and latency at "
                     f"batch {', '.join(map(str, recipe.bench.batch_sizes))}")
            rows += _runtime_rows(device, spec, eval_npz, recipe)
    from cidpipe.stages.trt import wants_engine

    if device.kind == "jetson" and wants_engine(recipe):
        announce(f"TensorRT engine on {device_name}: trtexec builds and times it on the board")
        rows += _jetson_trt_rows(device, artifacts, recipe)
    return rows


def _runtime_rows(
    device: DeviceSpec, spec: ArtifactSpec, eval_npz: Path, recipe: Recipe
) -> list[BenchResult]:
    base = {"artifact": spec.name, "format": spec.format, "backend": "onnxruntime", "device": device.name,
            "role": spec.role, "variant": spec.variant}
    try:
        out = run_remote_bench(
            device, spec.path, eval_npz, "onnxruntime", recipe.bench, provider=recipe.bench.ort_provider
        )
    except CidpipeError as err:
        # One device or artifact failing is that row's status; the rest of the bench goes on.
        return [
            BenchResult(
                **base,
                provider=None,
                batch_size=bs,
                status="failed",
                error=str(err),
                failure=failure_kind(err),
            )
            for bs in recipe.bench.batch_sizes
        ]
    accuracy = out.get("accuracy") or {}
    agreement = accuracy.get("agreement")
    judged = agreement is not None and not spec.retrained  # a QAT graph's agreement is information only
    status = "exported-but-failed" if judged and agreement < recipe.bench.min_agreement else "pass"
    rows = []
    state = out.get("board_state") or {}  # cidpipe's own parse of nvpmodel / jetson_clocks, on a Jetson
    host = _device_host(out.get("host"))
    if state:  # like the trtexec rows: another power mode makes a row incomparable with its baseline
        host = {**(host or {}), "power_mode": state["power_mode"]}
    for lat in out.get("latency", []):
        # Only the protocol's own keys (the reply is the device's word): nothing else lands in the row,
        # and whether the row is noisy is decided here from cov, not taken from the device.
        stats = {k: lat[k] for k in STAT_KEYS if k in lat}
        rows.append(
            BenchResult(
                **base,
                provider=out.get("provider"),
                batch_size=int(lat["batch_size"]),
                status=status,
                top1=accuracy.get("top1"),
                top5=accuracy.get("top5"),
                agreement=agreement,
                latency=stats,
                throughput_ips=lat.get("throughput_ips"),
                size_bytes=out.get("model_bytes"),
                peak_mem_bytes=out.get("peak_rss_bytes"),
                threads=out.get("threads"),
                noisy=is_noisy(stats, recipe.bench.cov_warning),
                host=host,
                extra={
                    **_class_breakdown(accuracy),
                    **_arithmetic(accuracy),
                    **({"power_mode": state["power_mode"], "clocks": state["clocks"]} if state else {}),
                    "remote": out.get("remote"),
                    "warnings": [str(w)[:500] for w in out.get("warnings", [])[:20]],
                    # the runtime process loaded only this artifact: its ru_maxrss is the artifact's peak
                    "peak_mem": {"scope": "artifact", "kind": "rss", "added_bytes": None},
                },
            )
        )
    return rows


def _arithmetic(accuracy: dict[str, Any]) -> dict[str, Any]:
    """The runtime's label of an accuracy measured on an exact Q/DQ twin, only as the runtime writes it."""
    return {"accuracy_arithmetic": EXACT_QDQ} if accuracy.get("arithmetic") == EXACT_QDQ else {}


def _class_breakdown(accuracy: dict[str, Any]) -> dict[str, Any]:
    """The device's per-class top-1 and confusion matrix, kept only when shaped as the runtime writes them
    (numbers, at most a few thousand classes, a square matrix of counts): the reply is the device's word."""
    out: dict[str, Any] = {}
    per_class = accuracy.get("per_class_top1")
    if isinstance(per_class, list) and len(per_class) <= 10_000 and all(
        v is None or (isinstance(v, (int, float)) and 0 <= v <= 100) for v in per_class
    ):
        out["per_class_top1"] = [None if v is None else float(v) for v in per_class]
    matrix = accuracy.get("confusion")
    if (
        isinstance(matrix, list)
        and len(matrix) <= 100
        and all(isinstance(r, list) and len(r) == len(matrix) for r in matrix)
        and all(isinstance(v, int) and v >= 0 for r in matrix for v in r)
    ):
        out["confusion"] = matrix
    return out


def _jetson_trt_rows(device: DeviceSpec, artifacts: list[ArtifactSpec], recipe: Recipe) -> list[BenchResult]:
    """Build the engine on the board with trtexec (same flags as the export stage) and time it there.

    trtexec measures latency and power only; accuracy of an engine needs the TensorRT Python bindings on
    the board and is reported by the runtime when an engine file is benched directly.
    """
    from cidpipe.bench.devices.jetson import build_engine_on_device, time_engine_on_device
    from cidpipe.bench.devices.ssh import SshTarget
    from cidpipe.export.trtexec import trtexec_command

    trt = recipe.export.trt
    wanted = "onnx-int8" if trt.precision == "int8" else "onnx-fp32"
    candidates = [a for a in artifacts if a.format == wanted and a.role != "teacher"]
    # For INT8 the S8S8 variant made for TensorRT (model.int8-trt.onnx) wins over the CPU one.
    candidates.sort(key=lambda a: "int8-trt" not in Path(a.path).name)
    source = candidates[0] if candidates else None
    if source is None:
        return []
    fmt = f"trt-{trt.precision}"
    rows = []
    for batch in recipe.bench.batch_sizes:
        base = {
            "artifact": f"{Path(source.path).stem}.engine",
            "format": fmt,
            "backend": "trtexec",
            "device": device.name,
            "provider": "TensorRT",
            "batch_size": batch,
        }
        try:
            shape = tuple(_input_shape(recipe))
            args = trtexec_command(
                source.path,
                Path("model.engine"),
                trt,
                input_shape=shape,
                extra={"shapes": f"input:{batch}x{'x'.join(map(str, shape))}"},
            )
            with SshTarget(device) as target:
                engine, _log = build_engine_on_device(device, source.path, args, target=target)
                timing = time_engine_on_device(device, engine, args, target=target)
        except CidpipeError as err:
            rows.append(BenchResult(**base, status="failed", error=str(err), failure=failure_kind(err)))
            continue
        rows.append(_timing_row(base, timing, batch, recipe.bench.cov_warning))
    return rows


def _timing_row(base: dict[str, Any], timing, batch: int, cov_warning: float) -> BenchResult:
    """A trtexec row: the protocol's statistics of trtexec's per-query latencies when the board wrote them
    (so the gate gets a p50 interval and a noisy flag, as for every other row), else trtexec's summary."""
    if timing.latencies_ms:
        latency = summarize(timing.latencies_ms)
    else:
        stats = timing.trtexec.get("stats", {}).get("latency", {})
        latency = {
            "mean_ms": stats.get("mean_ms"),
            "p50_ms": stats.get("median_ms"),
            "p90_ms": stats.get("p90_ms"),
            "p99_ms": stats.get("p99_ms"),
            "min_ms": stats.get("min_ms"),
            "max_ms": stats.get("max_ms"),
        }
    qps = timing.trtexec.get("throughput_qps")
    per_query = timing.energy_per_query_mj
    per_image = timing.energy_per_image_mj(batch)  # a trtexec query is one batch
    return BenchResult(
        **base,
        status="pass",
        latency=latency,
        noisy=is_noisy(latency, cov_warning),
        throughput_ips=qps * batch if qps else None,
        power_w=timing.average_power_w,
        energy_per_image_mj=per_image,
        host=_device_host({"tensorrt": timing.trtexec.get("tensorrt_version"),
                           "power_mode": timing.power_mode, "board": timing.board}),
        extra={
            "power_mode": timing.power_mode,
            "clocks": timing.clocks,
            "tensorrt": timing.trtexec.get("tensorrt_version"),
            "energy_per_query_mj": per_query,
            "latency_source": timing.latency_source,
        },
    )


def _device_host(host: Any) -> dict[str, Any] | None:
    """The device's own account of itself, cut to short strings / ints (it decides comparability only)."""
    if not isinstance(host, dict):
        return None
    clean: dict[str, Any] = {}
    for key, value in list(host.items())[:32]:
        if isinstance(key, str) and isinstance(value, (str, int)) and not isinstance(value, bool):
            clean[key[:64]] = value[:200] if isinstance(value, str) else value
    return clean or None


def _input_shape(recipe: Recipe) -> list[int]:
    from cidpipe.manifest import read_manifest

    return list((read_manifest(recipe.run_dir() / "export", "export").model or {})["input_shape"])

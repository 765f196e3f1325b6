"""`cidpipe bench`: accuracy and latency of every artifact of a run, here and on inventory devices."""

from __future__ import annotations

from typing import Annotated

import typer

from cidpipe.cli.common import (
    ForceOpt,
    JsonOpt,
    SetOpt,
    emit_json,
    resolve_target_with_flags,
    stage_options,
    stdout,
)


def bench(
    target: Annotated[str, typer.Argument(help="recipe or run directory")],
    on: Annotated[
        list[str] | None, typer.Option("--device", help="inventory device name (repeatable)")
    ] = None,
    inventory: Annotated[str | None, typer.Option("--inventory", help="devices.yaml path")] = None,
    batch_sizes: Annotated[str | None, typer.Option("--batch-sizes", help="e.g. 1,8,32")] = None,
    runs: Annotated[int | None, typer.Option("--runs", help="timed runs per batch size (minimum)")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (ONNX Runtime intra-op)")
    ] = None,
    set_: SetOpt = None,
    torch_device: Annotated[
        str, typer.Option("--torch-device", help="where the torch artifact runs")
    ] = "cpu",
    tolerate_device_failures: Annotated[
        bool,
        typer.Option(
            "--tolerate-device-failures",
            help="rows that failed on a device do not fail the bench (exit 8 only when every row failed)",
        ),
    ] = False,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Benchmark the run's artifacts.  Example: cidpipe bench runs/quickstart --device jetson"""
    from cidpipe.stages.bench import BenchDeviceFailures, raise_for_failed_artifacts, run_bench

    flags = {}
    if on:
        flags[f"bench.devices=[{', '.join(on)}]"] = " ".join(f"--device {name}" for name in on)
    for key, value in (("inventory", inventory), ("runs", runs), ("threads", threads)):
        if value is not None:
            flags[f"bench.{key}={value}"] = f"--{key} {value}"
    if batch_sizes is not None:
        flags[f"bench.batch_sizes=[{', '.join(map(str, parse_batch_sizes(batch_sizes)))}]"] = (
            f"--batch-sizes {batch_sizes}")
    if tolerate_device_failures:
        flags["bench.tolerate_device_failures=true"] = "--tolerate-device-failures"
    options = stage_options(torch_device, force, option="--torch-device")
    recipe, _ = resolve_target_with_flags(target, set_, flags)
    try:
        result = run_bench(recipe, options)
    except BenchDeviceFailures as failed:
        failed.result = failed.manifest.metrics  # --json: the published rows ride on the error reply
        raise
    if json_:
        raise_for_failed_artifacts(recipe, result.manifest)  # the error reply carries the rows
        emit_json(result.manifest.metrics)
        return
    if result.cached:  # a user typing `bench` wants the numbers, also when nothing needed measuring
        from cidpipe.bench.result import BenchResult
        from cidpipe.bench.table import print_results

        rows = [BenchResult.from_dict(row) for row in result.manifest.metrics.get("results") or []]
        print_results(rows, stdout, recipe.bench.cov_warning)
    raise_for_failed_artifacts(recipe, result.manifest)  # no gate follows to judge the rows: exit 6


def parse_batch_sizes(text: str) -> list[int]:
    """``--batch-sizes 1,8,32``: positive integers, else a usage error naming the bad one."""
    from cidpipe.errors import UsageError

    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise UsageError("--batch-sizes needs at least one batch size, e.g. --batch-sizes 1,8,32")
    sizes = []
    for part in parts:
        if not part.isdigit() or int(part) < 1:
            raise UsageError(
                f"--batch-sizes: {part!r} is not a positive whole number of images; "
                "use e.g. --batch-sizes 1,8,32"
            )
        sizes.append(int(part))
    return sizes


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)

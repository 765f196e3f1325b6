"""`cidpipe bench`: accuracy and latency of every artifact of a run, here and on inventory devices."""

from __future__ import annotations

from typing import Annotated

import typer

from cidpipe.cli.common import ForceOpt, JsonOpt, SetOpt, emit_json, resolve_target, stage_options


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
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Benchmark the run's artifacts.  Example: cidpipe bench runs/quickstart --device jetson"""
    from cidpipe.stages.bench import run_bench

    overrides = list(set_ or [])
    if on:
        overrides.append(f"bench.devices=[{', '.join(on)}]")
    for key, value in (("inventory", inventory), ("runs", runs), ("threads", threads)):
        if value is not None:
            overrides.append(f"bench.{key}={value}")
    if batch_sizes:
        overrides.append(f"bench.batch_sizes=[{batch_sizes}]")
    recipe, _ = resolve_target(target, overrides)
    result = run_bench(recipe, stage_options(torch_device, force))
    if json_:
        emit_json(result.manifest.metrics)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)

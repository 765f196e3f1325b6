"""`cidpipe quantize`: INT8 (static QDQ, calibrated on training images) or FP16 from the exported ONNX."""

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
from cidpipe.cli.tables import result_json


def quantize(
    target: Annotated[str, typer.Argument(help="recipe or run directory (the export stage must exist)")],
    mode: Annotated[str | None, typer.Option("--mode", help="int8 | fp16")] = None,
    calibration: Annotated[
        str | None, typer.Option("--calibration", help="minmax | entropy | percentile")
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", help="calibration images from the train split")
    ] = None,
    max_drop: Annotated[
        float | None, typer.Option("--max-drop", help="top-1 points allowed below FP32 (val)")
    ] = None,
    quant_target: Annotated[
        str | None, typer.Option("--for", help="cpu (U8/S8) | trt (S8/S8 symmetric)")
    ] = None,
    qat: Annotated[
        bool | None,
        typer.Option(
            "--qat/--no-qat",
            help="fine-tune with fake quantization and the run's distillation loss (needs the student and "
            "teacher stages); default: quantize.qat.enabled (auto = only when PTQ misses --max-drop)",
        ),
    ] = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Quantize the exported model.  Example: cidpipe quantize runs/quickstart --max-drop 0.5 --qat"""
    from cidpipe.stages.quantize import run_quantize

    flags = {}
    for key, value, flag in (
        ("mode", mode, "--mode"),
        ("calibration.method", calibration, "--calibration"),
        ("calibration.samples", samples, "--samples"),
        ("max_drop", max_drop, "--max-drop"),
        ("target", quant_target, "--for"),
        ("qat.enabled", None if qat is None else str(qat).lower(), "--qat"),
    ):
        if value is not None:
            flags[f"quantize.{key}={value}"] = f"{flag} {value}"
    recipe, _ = resolve_target_with_flags(target, set_, flags)
    result = run_quantize(recipe, stage_options("cpu", force))
    if json_:
        emit_json(result_json(result))
    else:
        m = result.manifest.metrics
        drop = f", validation top-1 drop {m['drop']:.2f} points" if m.get("drop") is not None else ""
        drop += f" ({m['path'].upper()})" if m.get("path") else ""
        stdout.print(
            f"{m.get('format')}: {'cached' if result.cached else 'written'} in {result.stage_dir}{drop}"
        )


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)

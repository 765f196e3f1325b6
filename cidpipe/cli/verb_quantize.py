"""`cidpipe quantize`: INT8 (static QDQ, calibrated on training images) or FP16 from the exported ONNX."""

from __future__ import annotations

from typing import Annotated

import typer

from cidpipe.cli.common import (
    ForceOpt,
    JsonOpt,
    SetOpt,
    emit_json,
    note_overrides_stay_here,
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
    from cidpipe.stages.quantize import QUANTIZE, run_quantize

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
    options = stage_options("cpu", force)
    QUANTIZE.validate(recipe)  # a refused recipe says so before any "what is replaced" line
    _say_what_is_replaced(recipe, options)
    result = run_quantize(recipe, options)
    note_overrides_stay_here(target, set_, flags, QUANTIZE, recipe, options.log)
    if json_:
        emit_json(result_json(result))
        return
    metrics = result.manifest.metrics
    variants = metrics.get("variants") or {"": metrics}
    for key, info in variants.items():
        name = result.manifest.artifacts[key].path if key in result.manifest.artifacts else info.get("format")
        drop = f", validation top-1 drop {info['drop']:.2f} points" if info.get("drop") is not None else ""
        drop += f" ({info['path'].upper()})" if info.get("path") else ""
        stdout.print(f"{name}: {'cached' if result.cached else 'written'} in {result.stage_dir}{drop}")


def _say_what_is_replaced(recipe, options) -> None:
    """The quantize stage holds the variants its recipe asks for: `--mode fp16` after an INT8 run makes a
    stage without the INT8 model. Said before it happens, with the way to keep both."""
    from rich.markup import escape

    from cidpipe.errors import CidpipeError
    from cidpipe.manifest import read_manifest

    try:
        finished = read_manifest(recipe.run_dir() / "quantize", "quantize")
    except CidpipeError:  # none yet, or not trusted: the stage itself says so
        return
    wanted = [key for key, _, _ in recipe.quantize.variants()]
    dropped = [key for key in finished.artifacts if key not in wanted]
    if dropped:
        asked = [mode for _, mode, _ in recipe.quantize.variants()]
        modes = ", ".join(dict.fromkeys([key.split("-")[0] for key in dropped] + asked))
        text = (f"the new stage replaces the finished one, which had the {', '.join(dropped)} model; one "
                f"stage makes several when asked together: --set 'quantize.modes=[{modes}]' (and "
                "quantize.targets: [cpu, trt] for both INT8 graphs)")
        options.log.print(f"[yellow]quantize[/]: {escape(text)}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)

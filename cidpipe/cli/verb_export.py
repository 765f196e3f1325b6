"""`cidpipe export --target onnx|trt`: the deployable model as ONNX (parity-checked) or a TensorRT engine.

The formats table (cidpipe/export/formats.py) decides which flags a target takes; a flag that does not apply
to the chosen target is a usage error rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cidpipe.cli.common import ForceOpt, JsonOpt, SetOpt, resolve_target, stage_options, stdout
from cidpipe.cli.tables import result_json
from cidpipe.export.formats import export_targets, formats_help, formats_json, target_formats, validate_flags

TargetArg = Annotated[
    str, typer.Argument(help="recipe, run directory or stage directory (runs/<name>/student)")
]


def export(
    target: TargetArg = "",
    to: Annotated[str, typer.Option("--target", help="onnx or trt (see --list)")] = "onnx",
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset (onnx)")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="fp32 | fp16 | int8 (trt)")] = None,
    workspace_mb: Annotated[
        int | None, typer.Option("--workspace-mb", help="builder workspace (trt)")
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option("--max-batch", help="largest batch of the profile (trt)")
    ] = None,
    on: Annotated[
        str | None, typer.Option("--device", help="build the engine on this inventory device (trtexec)")
    ] = None,
    list_formats: Annotated[bool, typer.Option("--list", help="print the formats table and exit")] = False,
    set_: SetOpt = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Export the run's model.  Example: cidpipe export runs/quickstart/student --target onnx"""
    if list_formats or not target:
        if json_:
            from cidpipe.cli.common import emit_json

            emit_json(formats_json())
        else:
            stdout.out(formats_help(), highlight=False)
        return
    fmt = target_formats(to)[0]  # the rows of one target share its flags
    flags = validate_flags(
        fmt, {"opset": opset, "precision": precision, "workspace_mb": workspace_mb, "max_batch": max_batch}
    )
    overrides = list(set_ or [])
    overrides += [f"export.opset={opset}"] if opset is not None else []
    overrides += [
        f"export.trt.{key}={flags[key]}" for key in ("precision", "workspace_mb", "max_batch") if key in flags
    ]
    recipe, stage = resolve_target(target, overrides)
    options = stage_options("cpu", force)
    from cidpipe.stages.trt import TARGET as TRT_TARGET

    if fmt.family == TRT_TARGET and on:
        from cidpipe.stages.trt import build_on_device

        summary = build_on_device(recipe, on)
        if json_:
            from cidpipe.cli.common import emit_json

            emit_json({"device": on, "summary": summary})
        else:
            stdout.print(summary)
        return
    if fmt.family == TRT_TARGET:
        from cidpipe.stages.trt import run_trt

        result = run_trt(
            recipe.model_copy(update={"export": _with_target(recipe.export, TRT_TARGET)}), options
        )
    else:
        from cidpipe.stages.export import run_export

        result = run_export(recipe, options, source_dir=stage)
    if json_:
        from cidpipe.cli.common import emit_json

        emit_json(result_json(result))
    else:
        stdout.print(f"{result.stage}: {'cached' if result.cached else 'written'} in {result.stage_dir}")


def _with_target(export, target: str):
    """The export section with ``target`` among its targets (``--target trt`` on a recipe without it)."""
    targets = list(dict.fromkeys([*export.targets, target]))
    return export.model_copy(update={"targets": targets})


def register(app: typer.Typer) -> None:
    exportable = ", ".join(export_targets())
    app.command(
        "export",
        help=f"Export the run's model ({exportable}; `--list` shows every format and its options).  "
        "Example: cidpipe export runs/quickstart/student --target onnx",
    )(export)

"""`cidpipe eval`: accuracy of any model or artifact of a run on validation, test and bias flavours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cidpipe.cli.common import (
    DeviceOpt,
    JsonOpt,
    SetOpt,
    check_device_option,
    emit_json,
    resolve_target,
    stdout,
)


def eval_cmd(
    target: Annotated[str, typer.Argument(help="run dir, stage dir (runs/<name>/student) or recipe")],
    artifact: Annotated[
        Path | None, typer.Option("--artifact", help="an .onnx file to evaluate instead")
    ] = None,
    linear_probe: Annotated[
        list[str] | None,
        typer.Option(
            "--linear-probe",
            help="fit a linear classifier on frozen features of this dataset (digits, mnist, fashion-mnist, "
            "cifar10, ...); repeat or comma-separate for several",
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Evaluate a model or artifact.  Example: cidpipe eval runs/quickstart/student --linear-probe mnist"""
    from cidpipe.evaluation import evaluate
    from cidpipe.export.ort_run import check_onnx_io
    from cidpipe.stages.contract import resolve_device

    probes = [name.strip() for text in linear_probe or [] for name in text.split(",") if name.strip()]
    device = check_device_option(device)
    if artifact is None and target.endswith(".onnx"):  # `cidpipe eval runs/q/export/model.onnx`
        artifact, target = Path(target), str(_run_dir_of(Path(target)))
    recipe, stage = resolve_target(target, set_)
    if artifact is not None and artifact.suffix == ".onnx" and artifact.is_file():
        check_onnx_io(artifact, *_expected_io(recipe, stage, artifact))
    result = evaluate(recipe, artifact or stage, linear_probes=probes, device=resolve_device(device))
    if json_:
        emit_json(result)
        return
    # The title as its own line: inside the two-column table a timm name wrapped mid-word.
    stdout.print(f"eval: {escape(str(result['model']))} on {escape(str(result['dataset']))}", highlight=False,
                 soft_wrap=True)
    table = Table()
    table.add_column("split")
    table.add_column("top-1 %", justify="right")
    for key, value in result.items():
        if key.endswith("_top1") or key == "bias_gap":
            table.add_row(key.removesuffix("_top1"), f"{value:.2f}")
    for name, probe in result.get("linear_probe", {}).items():
        table.add_row(f"linear probe {name} ({probe['train_samples']} train)", f"{probe['top1']:.2f}")
    stdout.print(table)


def _run_dir_of(onnx_file: Path) -> Path:
    """The run directory an artifact lives in (the nearest parent holding the run's recipe.yaml)."""
    from cidpipe.errors import UsageError

    if not onnx_file.is_file():
        raise UsageError(
            f"{onnx_file} does not exist; pass a run directory, a stage directory or an .onnx file"
        )
    for parent in onnx_file.resolve().parents:
        if (parent / "recipe.yaml").is_file():
            return parent
    raise UsageError(
        f"{onnx_file} is not inside a cidpipe run directory; name the run it belongs to: "
        f"cidpipe eval RUN --artifact {onnx_file}"
    )


def _expected_io(recipe, stage: Path | None, artifact: Path | None) -> tuple[list[int] | None, int | None]:
    """Image shape and class count the run's model was built for (its manifest), else the dataset's."""
    from cidpipe.evaluation import evaluation_data, is_teacher
    from cidpipe.manifest import MANIFEST_NAME, read_manifest
    from cidpipe.stages.export import model_stage

    if stage is not None:
        model_dir = stage
    else:  # an artifact: the manifest of the model it was exported from (export/teacher.onnx: the teacher)
        model_dir = recipe.run_dir() / ("teacher" if is_teacher(recipe, artifact) else model_stage(recipe))
    if (model_dir / MANIFEST_NAME).is_file():
        spec = read_manifest(model_dir).model or {}
        if spec.get("input_shape") and spec.get("num_classes"):
            return list(spec["input_shape"]), int(spec["num_classes"])
    from cidpipe.data.registry import load_dataset

    bundle = load_dataset(evaluation_data(recipe, artifact))
    x, _ = bundle.test.to_numpy(max_samples=1)
    return list(x.shape[1:]), bundle.num_classes


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)

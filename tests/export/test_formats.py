"""The formats table drives target names, flag validation, suffixes and the CLI help."""

from __future__ import annotations

import pytest

from cidpipe.errors import UsageError
from cidpipe.export.formats import (
    FORMATS,
    export_targets,
    format_for_path,
    formats_help,
    get_format,
    target_formats,
    validate_flags,
)


def test_every_format_is_reachable_by_name_and_suffix():
    for fmt in FORMATS:
        assert get_format(fmt.name) is fmt
        # An engine's precision is not in its name: the suffix tells the family, the manifest the row.
        assert format_for_path(f"runs/x/model{fmt.suffix}").family == fmt.family
    assert get_format("TensorRT").family == "trt" and get_format("onnx").name == "onnx-fp32"
    assert format_for_path("a/student.int8.onnx").name == "onnx-int8"  # longest suffix wins over .onnx
    assert format_for_path("a/student.int8-trt.onnx").name == "onnx-int8"
    assert format_for_path("a/student.plan").family == "trt"


def test_export_targets_are_families_of_rows():
    assert export_targets() == ["onnx", "trt"]
    assert [f.name for f in target_formats("tensorrt")] == ["trt-fp32", "trt-fp16", "trt-int8"]
    assert [f.name for f in target_formats("onnx")] == ["onnx-fp32"]
    with pytest.raises(UsageError, match=r"unknown export target 'onxx'; did you mean 'onnx'\?"):
        target_formats("onxx")


def test_unknown_target_names_choices_and_near_miss():
    with pytest.raises(
        UsageError, match=r"unknown artifact format 'onxx'; did you mean 'onnx-fp32'\? choose one of: torch"
    ):
        get_format("onxx")
    with pytest.raises(UsageError, match="cannot tell the format"):
        format_for_path("model.tflite")


def test_flags_are_checked_against_the_table():
    assert validate_flags("trt", {"precision": "fp16", "workspace_mb": 512, "opset": None}) == {
        "precision": "fp16",
        "workspace_mb": 512,
    }
    assert validate_flags("onnx", {"opset": 17, "dynamic_batch": True}) == {
        "opset": 17,
        "dynamic_batch": True,
    }
    with pytest.raises(
        UsageError, match=r"--workspace-mb does not apply to target 'onnx'; onnx takes: opset"
    ):
        validate_flags("onnx", {"workspace_mb": 512})
    with pytest.raises(UsageError, match="torch takes: no options"):
        validate_flags(get_format("torch"), {"opset": 17})


def test_table_facts_and_help():
    trt, int8 = get_format("trt-fp16"), get_format("onnx-int8")
    assert trt.requires == ("tensorrt",) and trt.cli_exportable and trt.backends == ("tensorrt",)
    assert not int8.cli_exportable and int8.produced_by == "quantize"
    assert get_format("onnx").missing_requirements() == []  # onnx + onnxruntime are installed here
    text = formats_help()
    for fmt in FORMATS:
        assert fmt.name in text and fmt.suffix in text


def test_export_list_json_is_the_table_as_one_json_object():
    """docs/json.md: every verb with --json prints one JSON object, --list included."""
    import json

    from tests.conftest import run_cli

    proc = run_cli("export", "--list", "--json")
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert reply["verb"] == "export" and reply["ok"] is True
    assert [row["format"] for row in reply["result"]] == [f.name for f in FORMATS]
    onnx_int8 = next(row for row in reply["result"] if row["format"] == "onnx-int8")
    assert onnx_int8["suffixes"] == [".int8.onnx", ".int8-trt.onnx"]
    assert "onnxruntime" in onnx_int8["backends"]

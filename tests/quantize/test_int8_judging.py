"""How an INT8 variant's accuracy is judged: a TensorRT graph by its exact Q/DQ arithmetic, a CPU graph by
this machine's kernels, and a CPU budget miss that the exact arithmetic does not share is explained (kernel
saturation on x86 without VNNI) instead of being blamed on quantization.

Real parts: the digits-trained net, ORT's quantizer and ORT sessions; the one constructed model is a
convolution whose weights and inputs put every U8xS8 product pair at the int16 limit, so that the kernel
effect is real on the CPUs where it exists (the test that needs it is skipped elsewhere).
"""

from __future__ import annotations

import pytest

from cidpipe.errors import ParityError
from cidpipe.export.ort_run import make_session, run_onnx, top1_percent
from cidpipe.machine import x86_without_vnni
from cidpipe.quantize.config import QuantizeConfig
from cidpipe.quantize.int8 import _kernel_diagnosis, judging_optimization, quantize_static_int8
from tests.fixtures.saturating import saturating_inputs, saturating_model


def test_trt_variant_is_judged_on_its_exact_arithmetic(fp32_onnx, digits, tmp_path):
    x_train, _, x_val, y_val = digits
    out = tmp_path / "trt.int8.onnx"
    cfg = QuantizeConfig(target="trt")
    result = quantize_static_int8(fp32_onnx, out, x_train[:64], cfg, val=(x_val, y_val))
    assert judging_optimization("trt") == "disabled" and judging_optimization("cpu") == "all"
    assert result["judged_with"].endswith("optimizations disabled")
    exact = top1_percent(run_onnx(make_session(out, optimization="disabled"), x_val), y_val)
    assert result["top1_int8"] == exact


@pytest.mark.parametrize(
    ("exact", "target", "explained"), [(89.8, "cpu", True), (88.0, "cpu", False), (89.8, "trt", False)]
)
def test_a_cpu_miss_the_exact_graph_does_not_share_is_explained(exact, target, explained):
    cfg = QuantizeConfig(target=target, max_drop=0.5)
    result: dict = {}
    text = _kernel_diagnosis(cfg, 90.0, exact, result)
    assert bool(text) is explained and ("kernel_diagnosis" in result) is explained
    if explained:
        assert "exact Q/DQ arithmetic drops only +0.20 points" in text
        assert result["top1_int8_exact"] == exact


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse2 avx avx2 fma", True),  # AVX2 only: the int16 pair path
        ("fpu avx2 avx512f avx512_vnni", False),
        ("fpu avx2 avx_vnni", False),
        ("fp asimd asimddp", False),  # ARM: not x86 at all
    ],
)
def test_x86_without_vnni_reads_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")
    assert x86_without_vnni(cpuinfo) is expected
    assert x86_without_vnni(tmp_path / "missing") is False


@pytest.mark.skipif(not x86_without_vnni(), reason="U8S8 int16 saturation exists on x86 CPUs without VNNI")
def test_kernel_saturation_is_named_in_the_budget_error(tmp_path):
    x, labels = saturating_inputs()
    model = saturating_model(tmp_path / "sat.onnx")
    probe = tmp_path / "probe.onnx"
    quantize_static_int8(model, probe, x, QuantizeConfig(target="cpu", float_stem=False))
    exact = top1_percent(run_onnx(make_session(probe, optimization="disabled"), x), labels)
    fast = top1_percent(run_onnx(make_session(probe), x), labels)
    assert exact == 100.0
    if fast > 50.0:
        pytest.skip(f"this CPU's INT8 kernels did not saturate on the constructed model ({fast:.0f} %)")
    cfg = QuantizeConfig(target="cpu", float_stem=False, max_drop=0.5, max_sensitivity_candidates=1,
                         max_float_nodes=1)
    with pytest.raises(ParityError, match=r"exact Q/DQ arithmetic drops only \+0.00 points.*reduce_range"):
        quantize_static_int8(model, tmp_path / "q.onnx", x, cfg, val=(x, labels))
    seven_bit = cfg.model_copy(update={"reduce_range": True})
    fixed = quantize_static_int8(model, tmp_path / "q7.onnx", x, seven_bit, val=(x, labels))
    assert fixed["budget_met"] and fixed["drop"] <= 0.5  # 7-bit weights: pairs stay inside int16

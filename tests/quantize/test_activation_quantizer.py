"""An activation quantizer built from a PTQ (scale, zero point) gives that pair back bit for bit, so a
fine-tune that has not moved yet writes back the PTQ artifact exactly, and a recalibration computes ORT's
own scale. Real part: onnxruntime's compute_scale_zp makes the PTQ pairs from random calibrated ranges (one
float32 rounding of the range put the recomputed scale a step off for some of them: tests/quantize/
test_qat_graph.py failed on such a calibration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnxruntime.quantization.quant_utils import compute_scale_zp

from cidpipe.quantize.fake_quant import ActivationQuantizer

CASES = [(0, 255, False, np.uint8), (-128, 127, True, np.int8)]


def _ort_pair(rmin: float, rmax: float, qmin: int, qmax: int, symmetric: bool, dtype) -> tuple[float, int]:
    """ORT's (scale, zero point) for a calibrated range, as its quantizer computes them."""
    ort_qmin, ort_qmax = (np.array(-127, dtype), np.array(127, dtype)) if symmetric else (
        np.array(qmin, dtype), np.array(qmax, dtype))
    zero, scale = compute_scale_zp(np.array(rmin, np.float32), np.array(rmax, np.float32), ort_qmin, ort_qmax,
                                   symmetric=symmetric)
    return float(scale), int(zero)


@pytest.mark.parametrize(("qmin", "qmax", "symmetric", "dtype"), CASES)
def test_ptq_scale_and_zero_point_round_trip_exactly(qmin, qmax, symmetric, dtype):
    rng = np.random.default_rng(0)
    for i in range(3000):
        magnitude = 10.0 ** rng.uniform(-3, 2)
        rmin = 0.0 if i % 10 == 0 else -magnitude * rng.uniform(0, 1)  # every tenth: ReLU output
        rmax = magnitude * rng.uniform(0, 1)
        scale, zero = _ort_pair(rmin, rmax, qmin, qmax, symmetric, dtype)
        q = ActivationQuantizer(scale, zero, qmin, qmax, symmetric)
        got_scale, got_zero = q.scale_zero_point()
        assert (got_scale.item(), int(got_zero.item())) == (scale, zero), (rmin, rmax)


@pytest.mark.parametrize(("qmin", "qmax", "symmetric", "dtype"), CASES)
def test_recalibration_computes_orts_scale(qmin, qmax, symmetric, dtype):
    rng = np.random.default_rng(1)
    q = ActivationQuantizer(0.1, 0 if symmetric else 3, qmin, qmax, symmetric)
    q.mode = "calibrate"
    for _ in range(200):
        x = torch.from_numpy(rng.normal(0.3, rng.uniform(0.1, 3), 64).astype(np.float32))
        q(x)
        seen = (q.seen_low.item(), q.seen_high.item())
        expected = _ort_pair(*seen, qmin, qmax, symmetric, dtype)
        saved = (q.low.clone(), q.high.clone())
        q.low.copy_(q.seen_low)
        q.high.copy_(q.seen_high)
        got = q.scale_zero_point()
        assert (got[0].item(), int(got[1].item())) == expected
        q.low.copy_(saved[0])
        q.high.copy_(saved[1])


def test_the_range_still_follows_the_activations():
    q = ActivationQuantizer(0.01, 0, 0, 255, False).train()
    before = q.scale_zero_point()[0].item()
    for _ in range(200):
        q(torch.full((4,), 5.0))
    assert q.scale_zero_point()[0].item() > 1.5 * before

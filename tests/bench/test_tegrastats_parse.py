"""tegrastats output of three Jetson generations (tests/fixtures/tegrastats, provenance in line 1)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from cidpipe.bench.tegrastats_parse import average_power_and_energy, parse_tegrastats, parse_tegrastats_line
from cidpipe.errors import DeviceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tegrastats"


def samples(name: str, interval_ms: float | None = None):
    return parse_tegrastats((FIXTURES / name).read_text(), interval_ms=interval_ms)


def test_every_fixture_names_its_source():
    for path in FIXTURES.glob("*.txt"):
        assert path.read_text().startswith("# source: "), path


def test_nano_pom_5v_in_without_unit():
    parsed = samples("nano_pom_5v_in.txt", interval_ms=500)
    assert [s.input_power_mw for s in parsed] == [3227.0, 3075.0, 2956.0]
    assert {s.input_rail for s in parsed} == {"POM_5V_IN"}
    assert [s.timestamp for s in parsed] == [0.0, 0.5, 1.0]
    first = parsed[0]
    assert first.rails_mw == {"POM_5V_GPU": 8949.0, "POM_5V_IN": 3227.0, "POM_5V_CPU": 3148.0}
    assert (first.ram_used_mb, first.ram_total_mb, first.gpu_util_pct) == (2020, 3964, 99)
    assert first.cpu_util_pct == [100, 100, 100, 100]
    assert parsed[1].gpu_util_pct == 83


def test_xavier_nx_vdd_in_without_unit():
    parsed = samples("xavier_nx_vdd_in.txt")
    assert [s.input_power_mw for s in parsed] == [12221.0, 14664.0, 14664.0]
    assert parsed[2].rails_mw["VDD_SOC"] == 1444.0
    assert parsed[0].timestamp is None


def test_tx2_vdd_in_among_many_rails():
    (sample,) = samples("tx2_vdd_in.txt")
    assert sample.input_rail == "VDD_IN" and sample.input_power_mw == 3140.0
    assert sample.rails_mw["VDD_4V0_WIFI"] == 633.0 and len(sample.rails_mw) == 6
    assert sample.cpu_util_pct == [9, 21, 25, 3, 1, 1]


def test_orin_mw_with_printed_timestamps():
    parsed = samples("orin_nano_mw.txt")
    assert len(parsed) == 6
    assert parsed[0].timestamp == datetime(2026, 4, 27, 14, 59, 41, tzinfo=timezone.utc).timestamp()
    assert [s.input_power_mw for s in parsed] == [4761.0] * 3 + [6626.0] * 3
    assert parsed[3].rails_mw == {"VDD_IN": 6626.0, "VDD_CPU_GPU_CV": 1228.0, "VDD_SOC": 2380.0}
    assert (parsed[3].ram_used_mb, parsed[3].ram_total_mb) == (779, 7620)


def test_average_power_and_energy_in_a_window():
    parsed = samples("orin_nano_mw.txt")
    t0 = parsed[3].timestamp
    watts, mj = average_power_and_energy(parsed, (t0, t0 + 2.0), inferences=400)
    assert watts == pytest.approx(6.626)
    assert mj == pytest.approx(6.626 * 2.0 / 400 * 1000)  # 33.13 mJ per inference


def test_average_over_all_samples_uses_their_span():
    watts, mj = average_power_and_energy(samples("nano_pom_5v_in.txt", interval_ms=500), None, inferences=10)
    assert watts == pytest.approx((3227 + 3075 + 2956) / 3 / 1000)
    assert mj == pytest.approx(watts * 1.0 / 10 * 1000)


def test_board_without_input_rail_sums_rails():
    sample = parse_tegrastats_line(
        "RAM 1500/7850MB GR3D_FREQ 0% VDD_GPU_SOC 1191mW/1191mW VDD_CPU_CV 400mW/450mW"
    )
    assert sample.input_rail == "sum" and sample.input_power_mw == 1591.0


def test_errors_and_non_tegrastats_lines():
    assert parse_tegrastats_line("$ sudo tegrastats") is None
    with pytest.raises(DeviceError, match="no tegrastats sample"):
        average_power_and_energy(samples("orin_nano_mw.txt"), (0.0, 1.0), inferences=1)
    with pytest.raises(DeviceError, match="no duration"):
        average_power_and_energy(samples("tx2_vdd_in.txt"), None, inferences=1)

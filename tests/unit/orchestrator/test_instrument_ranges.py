"""What each registry entry declares it reaches, and the steps a station position's
instruments cannot run (checked before a run: ``orchestrator.run.ranges``)."""

from __future__ import annotations

from typing import Any

import pytest

from labrig.orchestrator.instruments import InstrumentLimits, entry
from labrig.orchestrator.run.ranges import format_quantity, position_problems
from labrig.orchestrator.station import DEFAULT_STATION, INPROCESS_STATION, StationConfig
from labrig.protocols.loader import load_protocol_text


def _limits(driver: str, **options: Any) -> InstrumentLimits:
    e = entry(driver)
    return e.limits_for(e.parse_options(options))


@pytest.mark.parametrize(
    ("driver", "options", "top_Hz"),
    [
        ("biologic", {"model": "VMP-300"}, 7e6),
        ("biologic", {"model": "SP-300"}, 7e6),
        ("biologic", {"model": "VSP-300"}, 7e6),
        ("biologic", {"model": "SP-240"}, 7e6),
        ("biologic", {"model": "VMP3"}, 1e6),
        ("biologic", {"model": "VSP"}, 1e6),
        ("biologic", {"model": "SP-150"}, 1e6),
        ("biologic", {"model": "VMP3", "max_frequency_Hz": 2e5}, 2e5),  # the unit's board
        ("gamry", {}, 1e6),  # Interface 1000
        ("gamry", {"model": "Reference 600"}, 5e6),
        ("palmsens", {}, 200e3),  # EmStat Pico, as the simulator reports itself
        ("palmsens", {"model": "EmStat4"}, 200e3),
        ("palmsens", {"model": "Nexus"}, 1e6),
        ("palmsens", {"model": "Nexus", "max_frequency_Hz": 5e5}, 5e5),
    ],
)
def test_eis_range_per_model_and_setting(
    driver: str, options: dict[str, Any], top_Hz: float
) -> None:
    band = _limits(driver, **options).frequency_Hz
    assert band is not None and band[1] == top_Hz and 0 < band[0] < 1.0


def test_the_driver_refuses_what_the_registry_says_it_cannot_reach() -> None:
    """One figure: the BioLogic driver's run-time check uses the same model table."""
    from labrig.drivers.biologic import MODELS

    for m in MODELS.values():
        band = _limits("biologic", model=m.name).frequency_Hz
        assert band is not None and band[1] == m.max_frequency_Hz


def test_other_ranges_are_declared_the_same_way() -> None:
    assert _limits("biologic", model="VMP3").current_A == 0.4
    assert _limits("biologic", model="VMP-300", max_current_A=2.0).current_A == 2.0
    assert _limits("keithley2450").current_A == 1.05
    assert _limits("maccor").current_A is None  # not known unless the station says
    assert _limits("maccor", max_current_A=5.0).current_A == 5.0
    assert _limits("espec").temperature_C == (-40.0, 100.0)
    assert _limits("espec", min_C=-70, max_C=180).temperature_C == (-70.0, 180.0)
    assert _limits("sim-chamber", max_C=60.0).temperature_C == (-40.0, 60.0)
    assert _limits("eurotherm", max_C=1100.0).temperature_C == (0.0, 1100.0)
    assert _limits("alicat", full_scale_sccm=200.0).flow_sccm == 200.0
    assert _limits("sim-eis") == InstrumentLimits()  # the in-process simulator: no limit
    with pytest.raises(ValueError, match="below max_C"):
        entry("espec").parse_options({"min_C": 50, "max_C": 20})


def test_format_quantity() -> None:
    assert format_quantity(7e6, "Hz") == "7 MHz"
    assert format_quantity(0.01, "Hz") == "10 mHz"
    assert format_quantity(10e-6, "Hz") == "10 µHz"
    assert format_quantity(0.5, "A") == "500 mA"
    assert format_quantity(200e3, "Hz") == "200 kHz"


PROTOCOL = """\
name: checks
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 700}
defaults: {temperature_degC: 45}
sequence:
  - Charge at 0.5C until 3.68 V
  - EIS from 7 MHz to 100 mHz, 10 per decade, 10 mV amplitude at OCV
  - Set temperature to 120 °C
  - Discharge at 600 mA until 2.28 V
  - EIS from 1 MHz to 10 mHz, 10 per decade, 7 mV amplitude at OCV
"""


def _station(eis: dict[str, Any], chamber: dict[str, Any] | None = None) -> StationConfig:
    return StationConfig.model_validate(
        {
            "name": "s",
            "instruments": {
                "cyc": {"driver": "maccor", "address": "tcp://h:1", "channels": 8,
                        "options": {"max_current_A": 0.5}},
                "vmp": eis,
                "oven": chamber or {"driver": "espec", "address": "tcp://h:2"},
            },
            "positions": [{"name": "A1", "cycler": "cyc/0", "impedance": "vmp/0",
                           "chamber": "oven"}],
        }
    )  # fmt: skip


def test_a_vmp3_refuses_7_mhz_naming_the_step_the_instrument_and_its_limit() -> None:
    proto = load_protocol_text(PROTOCOL, source_name="p.yaml")
    st = _station(
        {"driver": "biologic", "address": "biologic://USB0", "options": {"model": "VMP3"}}
    )
    problems = position_problems(proto, st, st.position("A1"))
    by_path = {p.path: p.message for p in problems}
    assert set(by_path) == {("sequence", 1), ("sequence", 2), ("sequence", 3)}
    eis = by_path[("sequence", 1)]
    assert "7 MHz" in eis and "'vmp'" in eis and "BioLogic VMP3" in eis and "1 MHz" in eis
    assert "instruments.vmp.options.max_frequency_Hz" in eis
    assert "120 °C" in by_path[("sequence", 2)] and "-40..100 °C" in by_path[("sequence", 2)]
    current = by_path[("sequence", 3)]
    assert "600 mA" in current and "500 mA" in current and "'cyc'" in current


def test_the_lab_vmp300_runs_both_checkpoints() -> None:
    proto = load_protocol_text(PROTOCOL.replace("120 °C", "45 °C"), source_name="p.yaml")
    st = _station(
        {"driver": "biologic", "address": "biologic://USB0", "options": {"model": "VMP-300"}},
        {"driver": "espec", "address": "tcp://h:2", "options": {"max_C": 150}},
    )
    problems = position_problems(proto, st, st.position("A1"))
    assert [p.path for p in problems] == [("sequence", 3)]  # only the MACCOR's 600 mA


def test_low_frequencies_and_chamber_defaults_are_checked_too() -> None:
    proto = load_protocol_text(
        PROTOCOL.replace("temperature_degC: 45", "temperature_degC: -60"), source_name="p.yaml"
    )
    st = _station({"driver": "palmsens", "address": "serial:///dev/x"})  # EmStat Pico
    paths = {p.path: p.message for p in position_problems(proto, st, st.position("A1"))}
    assert "-60 °C" in paths[("defaults", "temperature_degC")]
    assert "10 mHz" in paths[("sequence", 4)] and "16 mHz" in paths[("sequence", 4)]
    assert "200 kHz" in paths[("sequence", 1)] and "PalmSens EmStat Pico" in paths[("sequence", 1)]


def test_a_step_whose_instrument_the_position_lacks_is_named() -> None:
    proto = load_protocol_text(PROTOCOL, source_name="p.yaml")
    st = StationConfig.model_validate(
        {"name": "s", "instruments": {"smu": {"driver": "keithley2450",
                                              "address": "visa://TCPIP::h::5025::SOCKET"}},
         "positions": [{"name": "K1", "cycler": "smu/0"}]}
    )  # fmt: skip
    msgs = [p.message for p in position_problems(proto, st, st.position("K1"))]
    assert sum("no impedance channel" in m for m in msgs) == 2
    assert any("no chamber" in m for m in msgs)


def test_furnace_targets_and_flows_against_the_furnace_station() -> None:
    text = """\
name: anneal
limits: {furnace_max_C: 1300}
sequence:
  - Set gas N2 to 250 sccm
  - Ramp furnace to 1250 °C at 2 K/min
  - Set gas Ar to 10 sccm
"""
    proto = load_protocol_text(text, source_name="a.yaml")
    st = StationConfig.model_validate(
        {"name": "f",
         "instruments": {"furnace": {"driver": "eurotherm", "address": "serial:///dev/x"},
                         "mfc": {"driver": "alicat", "address": "serial:///dev/y", "channels": 2,
                                 "options": {"full_scale_sccm": 200}}},
         "positions": [{"name": "tube1", "kind": "furnace", "furnace": "furnace",
                        "gas": {"N2": "mfc/0", "O2": "mfc/1"}}]}
    )  # fmt: skip
    found = {p.path: p.message for p in position_problems(proto, st, st.position("tube1"))}
    assert "250 sccm" in found[("sequence", 0)] and "200 sccm" in found[("sequence", 0)]
    assert "1250 °C" in found[("sequence", 1)] and "0..1200 °C" in found[("sequence", 1)]
    assert "'Ar'" in found[("sequence", 2)] and "N2, O2" in found[("sequence", 2)]


def test_the_built_in_stations_run_the_library() -> None:
    from labrig.orchestrator.runner import is_thermal
    from labrig.protocols.library import library_names
    from labrig.protocols.loader import load_protocol

    for name in library_names():
        proto = load_protocol(name)
        for st in (DEFAULT_STATION, INPROCESS_STATION):
            pos = st.position(None, "furnace" if is_thermal(proto) else "cell")
            assert position_problems(proto, st, pos) == [], (name, st.name)

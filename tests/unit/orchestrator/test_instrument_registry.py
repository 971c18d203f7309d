"""The instrument registry: one entry per driver, typed options checked when a station
file loads, references checked against what each instrument offers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.orchestrator.instruments import ENTRIES, REGISTRY, Capability, entry
from labrig.orchestrator.station import (
    DEFAULT_STATION,
    INPROCESS_STATION,
    StationConfig,
    StationError,
    load_station,
)


def test_the_table_covers_every_instrument_once() -> None:
    names = [e.driver for e in ENTRIES]
    assert len(names) == len(set(names)) == len(REGISTRY)
    assert set(names) >= {
        "maccor", "palmsens", "keithley2450", "eurotherm", "alicat", "espec",
        "sim", "sim-eis", "sim-chamber",
    }  # fmt: skip
    for e in ENTRIES:
        assert e.capabilities and e.summary
        assert e.open is not None or e.simulate is not None
        assert e.options.model_config.get("extra") == "forbid", e.driver
        e.parse_options({})  # every option has a default


def test_an_unknown_driver_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown driver 'os\.system'; known: alicat, "):
        entry("os.system")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    return path


def test_an_option_typo_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: lab\n"
        "instruments:\n"
        "  cycler:\n"
        "    driver: maccor\n"
        "    address: tcp://10.0.0.1:57570\n"
        "    options: {timeout: 5}\n"
        "positions:\n"
        "  - {name: A1, cycler: cycler/0}\n",
    )
    with pytest.raises(StationError) as info:
        load_station(path)
    assert str(info.value) == (
        f"{path}:6: instruments.cycler.options.timeout: Extra inputs are not permitted"
    )


def test_option_values_are_checked_by_type_and_range(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: lab\n"
        "instruments:\n"
        "  furnace: {driver: eurotherm, address: 'serial:///dev/ttyUSB0', options: "
        "{series: 2500, unit: 0}}\n"
        "  mfc: {driver: alicat, address: 'serial:///dev/ttyUSB1', channels: 3, "
        "options: {units: AB}}\n"
        "positions:\n"
        "  - {name: t1, kind: furnace, furnace: furnace, gas: {N2: mfc/0}}\n",
    )
    with pytest.raises(StationError) as info:
        load_station(path)
    lines = str(info.value).splitlines()
    assert any("instruments.furnace.options.series: Input should be '2400' or '3200'" in x
               for x in lines)  # fmt: skip
    assert any("instruments.furnace.options.unit: Input should be greater than or equal to 1"
               in x for x in lines)  # fmt: skip
    assert any(x.endswith("instruments.mfc: options.units 'AB' names 2 unit ids for 3 channels")
               for x in lines)  # fmt: skip
    assert all(x.startswith(f"{path}:") for x in lines)


def test_a_reference_must_name_an_instrument_that_offers_what_is_asked(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: lab\n"
        "instruments:\n"
        "  cycler: {driver: maccor, address: 'tcp://10.0.0.1:57570', channels: 2}\n"
        "  eis: {driver: palmsens, address: 'serial:///dev/ttyACM0'}\n"
        "positions:\n"
        "  - {name: A1, cycler: eis/0, impedance: cycler/1}\n"
        "  - name: A2\n"
        "    cycler: cycler/1\n"
        "    gas: {N2: cycler/0}\n",
    )
    with pytest.raises(StationError) as info:
        load_station(path)
    assert str(info.value).splitlines() == [
        f"{path}:6: positions.0.cycler: 'eis/0' is a palmsens instrument, which offers "
        "impedance, not cycler",
        f"{path}:6: positions.0.impedance: 'cycler/1' is a maccor instrument, which offers "
        "cycler, not impedance",
        f"{path}:9: positions.1.gas.N2: 'cycler/0' is a maccor instrument, which offers "
        "cycler, not gas",
    ]


def test_typed_options_reach_the_station_and_survive_a_round_trip() -> None:
    for station in (DEFAULT_STATION, INPROCESS_STATION):
        again = StationConfig.model_validate(station.model_dump(mode="json"))
        assert again == station
    furnace = DEFAULT_STATION.instruments["furnace"].options
    assert furnace == entry("eurotherm").parse_options({"series": "2400"})
    assert DEFAULT_STATION.instruments["cycler"].options == entry("maccor").parse_options({})


def test_the_example_stations_use_typed_options() -> None:
    examples = Path(__file__).resolve().parents[3] / "examples"
    furnace = load_station(examples / "furnace_station.yaml")
    assert furnace.instruments["furnace"].options == entry("eurotherm").parse_options(
        {"series": "2400", "unit": 1}
    )


def test_position_refs_name_each_capability() -> None:
    pos = DEFAULT_STATION.position(None, "furnace")
    assert pos.refs() == [
        (Capability.furnace, "furnace", "furnace"),
        (Capability.gas, "N2", "mfc/0"),
        (Capability.gas, "O2", "mfc/1"),
        (Capability.gas, "Ar", "mfc/2"),
    ]


def test_sim_list_and_an_unknown_simulator() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["sim", "list"])
    assert listed.exit_code == 0
    served = {line.split()[0] for line in listed.output.splitlines()}
    assert served == {e.driver for e in ENTRIES if e.serve is not None}
    assert {"maccor", "palmsens", "keithley2450", "eurotherm", "alicat", "espec"} <= served
    bad = runner.invoke(app, ["sim", "serve", "sim-eis"])
    assert bad.exit_code == 2
    assert "unknown simulator 'sim-eis'; choose one of: alicat, espec," in bad.output

from __future__ import annotations

from pathlib import Path

import pytest

from labrig.orchestrator.station import DEFAULT_STATION, StationError, load_station

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize(
    "name", ["lab_station.yaml", "palmsens_station.yaml", "furnace_station.yaml"]
)
def test_example_stations_load(name: str) -> None:
    st = load_station(EXAMPLES / name)
    assert st.positions


def test_default_station_has_cells_and_a_furnace() -> None:
    assert DEFAULT_STATION.position(None).name == "ch0"
    assert DEFAULT_STATION.position(None, "furnace").name == "tube1"


def test_station_rejects_unknown_driver_and_bad_reference(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(
        "name: s\ninstruments:\n  c: {driver: os.system, address: 'tcp://h:1'}\n"
        "positions:\n  - {name: A, cycler: c/0}\n"
    )
    with pytest.raises(StationError, match="unknown driver"):
        load_station(p)
    p.write_text(
        "name: s\ninstruments:\n  c: {driver: maccor, address: 'tcp://h:1', channels: 2}\n"
        "positions:\n  - {name: A, cycler: c/5}\n"
    )
    with pytest.raises(StationError, match=r"channels 0\.\.1"):
        load_station(p)

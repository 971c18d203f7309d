"""``--sim`` on stations of any registered instruments: each replaced by its simulator,
reached through the lab's driver, all acting on the position's one simulated cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labrig.orchestrator.events import RunState
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import StationConfig
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from tests.helpers import run_virtual_strict

PROTOCOL = """
name: one cycle at 45 °C
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10, temperature_degC: [0, 60]}
defaults: {temperature_degC: 45}
sequence:
  - Charge at 0.5C until 3.68 V
  - Discharge at 0.5C until 2.28 V
  - EIS from 100 kHz to 1 Hz, 5 per decade, 10 mV amplitude at OCV
"""

#: cycler and impedance instruments per case; the chamber is an ESPEC every time
CASES = {
    "maccor+palmsens": (
        {"driver": "maccor", "address": "tcp://10.0.0.20:57570", "channels": 8},
        {"driver": "palmsens", "address": "serial:///dev/ttyACM0"},
    ),
    "keithley2450+sim-eis": (
        {
            "driver": "keithley2450",
            "address": "visa://TCPIP::10.0.0.40::5025::SOCKET",
            "options": {"poll_s": 20.0},
        },
        {"driver": "sim-eis"},
    ),
}


def _station(cycler: dict[str, Any], eis: dict[str, Any]) -> StationConfig:
    return StationConfig.model_validate(
        {
            "name": "lab",
            "instruments": {
                "cyc": cycler,
                "eis": eis,
                "oven": {"driver": "espec", "address": "tcp://10.0.0.30:57732"},
            },
            "positions": [{"name": "A4", "cycler": "cyc/3" if "channels" in cycler else "cyc",
                           "impedance": "eis/0", "chamber": "oven"}],
        }
    )  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_station_of_registered_instruments_dry_runs_through_their_drivers(
    case: str, tmp_path: Path
) -> None:
    proto = load_protocol_text(PROTOCOL, source_name="one.yaml")
    req = RunRequest(
        protocol=proto,
        protocol_yaml=dump_protocol_yaml(proto),
        out_dir=tmp_path,
        station=_station(*CASES[case]),
        sim=True,
    )
    outcome, root = run_virtual_strict(execute_run(req))
    assert outcome.state == RunState.finished, outcome.reason
    assert outcome.cycles == 1
    (spectrum,) = list((root / "eis").iterdir())
    assert pq.read_table(spectrum).num_rows == 26
    data = pd.concat(pd.read_parquet(p) for p in sorted((root / "data").glob("*.parquet")))
    assert data["voltage_V"].max() >= 3.67 and data["voltage_V"].min() <= 2.29
    temperature = data["temperature_C"].dropna().to_numpy()
    if len(temperature):  # the cycler reports the cell's temperature: the chamber's air
        assert np.all(np.abs(temperature - 45.0) <= 0.5)

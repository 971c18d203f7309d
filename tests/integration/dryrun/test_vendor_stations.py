"""``labrig run --sim`` on stations whose potentiostats are reached through a vendor
library: the BioLogic VMP-300 (cycling and EIS on one channel) and a Gamry EIS channel
beside a MACCOR cycler. The lab's drivers run over the simulated libraries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app

runner = CliRunner()

PROTOCOL = """\
name: cycle and EIS checkpoints
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 5}
defaults: {record: {every_s: 60}}
sequence:
  - label: first
    steps: [Charge at 0.5C until 3.68 V, Discharge at 0.5C until 2.28 V]
  - label: eis_1
    steps:
      - EIS from 7 MHz to 100 mHz, 6 per decade, 10 mV amplitude at OCV, after 10 min rest
  - label: second
    steps: [Charge at 0.5C until 3.68 V, Discharge at 0.5C until 2.28 V]
  - label: eis_2
    steps:
      - EIS from 1 MHz to 10 mHz, 5 per decade, 7 mV amplitude at OCV, after 10 min rest
"""

STATIONS = {
    "biologic": """\
name: vmp
instruments:
  vmp:
    driver: biologic
    address: biologic://USB0
    channels: 16
    options: {model: VMP-300, library_dir: 'C:\\\\EC-Lab Development Package\\\\lib', poll_s: 60}
positions:
  - {name: A1, cycler: vmp/3, impedance: vmp/3}
""",
    "gamry": """\
name: maccor-gamry
instruments:
  cycler: {driver: maccor, address: "tcp://10.0.0.20:57570", channels: 8}
  eis: {driver: gamry, address: "gamry://IFC1000-12345", options: {ocv_before_eis_s: 5}}
positions:
  - {name: A1, cycler: cycler/2, impedance: eis/0}
""",
}


@pytest.mark.parametrize("kind", sorted(STATIONS))
def test_a_protocol_dry_runs_on_the_vendor_station(kind: str, tmp_path: Path) -> None:
    proto = tmp_path / "p.yaml"
    # the Interface 1000 reaches 1 MHz: its protocol starts there
    proto.write_text(PROTOCOL if kind == "biologic" else PROTOCOL.replace("7 MHz", "1 MHz"))
    station = tmp_path / "station.yaml"
    station.write_text(STATIONS[kind])
    out = tmp_path / "runs"
    result = runner.invoke(
        app, ["run", str(proto), "--sim", "--station", str(station), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    spectra = sorted((run_dir / "eis").iterdir())
    assert len(spectra) == 2, spectra
    frames = [pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p) for p in spectra]
    ranges = sorted((f["frequency_Hz"].max(), f["frequency_Hz"].min()) for f in frames)
    top = 7e6 if kind == "biologic" else 1e6
    assert ranges == [(pytest.approx(1e6), pytest.approx(0.01)),
                      (pytest.approx(top), pytest.approx(0.1))]  # fmt: skip
    for f in frames:
        assert len(f) >= 40
        assert (f["z_real_ohm"] > 0).all() and f["z_imag_ohm"].iloc[-1] < 0
    cycles = pd.read_parquet(run_dir / "cycles.parquet")
    assert len(cycles) == 2 and (cycles["discharge_capacity_mAh"] > 0.5).all()

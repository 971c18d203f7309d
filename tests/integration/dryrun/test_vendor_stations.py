"""``labrig run --sim`` on stations whose potentiostats are reached through a vendor
library: the BioLogic VMP-300 (cycling and EIS on one channel, or EIS beside a MACCOR
cycler as on the built-in station) and a Gamry EIS channel beside a MACCOR cycler. The
lab's drivers run over the simulated libraries; the spectra are the simulated cell's
impedance within its noise, and every run ends in its instruments' safe state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from labrig.drivers.capabilities import EisRequest, EisResult, ImpedanceChannel
from labrig.orchestrator.cli import app
from labrig.orchestrator.events import RunState
from labrig.orchestrator.instruments.sim.station import SimSource
from labrig.orchestrator.run.bindings import RunBindings
from labrig.orchestrator.run.instruments import open_position
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import DEFAULT_STATION, load_station
from labrig.protocols.loader import load_protocol_text
from labrig.simulators.biologic import BioLogicSim
from labrig.simulators.cell.impedance import impedance
from tests.helpers import run_virtual_strict

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


# --------------------------------------------------------------------------- the lab's EIS

#: the lab's cycling-plus-EIS protocol: formation, EIS of the formed cell (7 MHz-100 mHz,
#: 10 mV), 1C cycles, EIS after the last one (7 MHz-10 mHz, 7 mV), both at the OCV
LAB = """\
name: cycling with the lab's EIS checkpoints
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200, counter_electrode: In/InLi}
limits: {voltage_V: [1.95, 3.75], current_abs_mA: 5}
defaults: {record: {every_s: 60, dV_mV: 10}}
sequence:
  - label: formation
    steps: [Charge at 0.5C until 3.68 V, Discharge at 0.5C until 2.28 V]
  - label: eis_formed
    steps:
      - EIS from 7 MHz to 100 mHz, 10 per decade, 10 mV amplitude at OCV, after 30 min rest
  - label: cycling
    repeat: 6
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
    checkpoints:
      - at: [6]
        counts_as_cycle: false
        steps:
          - EIS from 7 MHz to 10 mHz, 10 per decade, 7 mV amplitude at OCV, after 30 min rest
"""

#: where the lab runs it: the cycling and the EIS on one VMP-300 channel, or the cycling
#: on a MACCOR channel and the EIS on a VMP-300 channel (the built-in station: no file)
LAB_STATIONS: dict[str, str | None] = {"vmp300": STATIONS["biologic"], "maccor+vmp300": None}

#: (f_high, f_low, points) of the two checkpoints
SWEEPS = [(7e6, 0.1, 79), (7e6, 0.01, 89)]


def _events(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("where", sorted(LAB_STATIONS))
def test_the_labs_protocol_dry_runs_end_to_end(where: str, tmp_path: Path) -> None:
    proto = tmp_path / "lab.yaml"
    proto.write_text(LAB)
    args = ["run", str(proto), "--sim", "--out", str(tmp_path / "runs"), "-q"]
    text = LAB_STATIONS[where]
    if text is not None:
        (tmp_path / "station.yaml").write_text(text)
        args += ["--station", str(tmp_path / "station.yaml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    spectra = [pd.read_parquet(p) for p in sorted((run_dir / "eis").iterdir())]
    got = [(f["frequency_Hz"].iloc[0], f["frequency_Hz"].iloc[-1], len(f)) for f in spectra]
    assert got == [(pytest.approx(hi), pytest.approx(lo), n) for hi, lo, n in SWEEPS]
    for f in spectra:
        assert (f["z_real_ohm"] > 0).all() and f["z_imag_ohm"].iloc[-1] < 0
    cycles = pd.read_parquet(run_dir / "cycles.parquet")
    assert len(cycles) == 7 and (cycles["discharge_capacity_mAh"] > 0.5).all()
    events = _events(run_dir)
    assert [e for e in events if e["kind"] == "fault"] == []  # a failed safe state is one
    assert events[-1]["kind"] == "run_ended" and events[-1]["data"]["state"] == "finished"
    meta = json.loads((run_dir / "run.json").read_text())
    drivers = {k: v["driver"] for k, v in meta["station_config"]["instruments"].items()}
    assert "biologic" in drivers.values()
    assert ("maccor" in drivers.values()) == (where == "maccor+vmp300")


class _Truth:
    """The position's impedance channel, noting the simulated cell's noise-free
    impedance at the start of each sweep (the cell rests at open circuit throughout)."""

    def __init__(self, inner: ImpedanceChannel, cell: Any) -> None:
        self.inner = inner
        self.cell = cell
        self.truths: list[np.ndarray] = []

    @property
    def name(self) -> str:
        return self.inner.name

    async def measure_eis(self, request: EisRequest) -> EisResult:
        engine = self.cell.engine
        at = asyncio.get_running_loop().time()
        freqs = np.asarray(request.frequencies_Hz)
        self.truths.append(impedance(engine.model, engine.state_at(at), engine.temperature_C,
                                     freqs))  # fmt: skip
        return await self.inner.measure_eis(request)

    async def measure_ocv(self, duration_s: float) -> float:
        return await self.inner.measure_ocv(duration_s)

    async def safe_state(self) -> None:
        await self.inner.safe_state()


@pytest.mark.parametrize("where", sorted(LAB_STATIONS))
def test_the_labs_spectra_are_the_cells_impedance_and_runs_end_safe(
    where: str, tmp_path: Path
) -> None:
    text = LAB_STATIONS[where]
    if text is None:
        station = DEFAULT_STATION
    else:
        (tmp_path / "station.yaml").write_text(text)
        station = load_station(tmp_path / "station.yaml")
    proto = load_protocol_text(LAB, source_name="lab.yaml")
    position = station.position(None)

    async def main() -> tuple[list[np.ndarray], Path, dict[str, Any]]:
        source = SimSource(proto.cell, seed=3)
        async with open_position(station, position, source) as inst:
            assert inst.impedance is not None and inst.cycler is not None
            truth = _Truth(inst.impedance, source.cell)
            bindings = RunBindings(cycler=inst.cycler, impedance=truth, chamber=inst.chamber)
            req = RunRequest(protocol=proto, protocol_yaml=LAB, out_dir=tmp_path / "runs",
                             station=station, sim=True, seed=3)  # fmt: skip
            outcome, root = await execute_run(req, bindings=bindings)
            assert outcome.state == RunState.finished, outcome.reason
            engine = source.cell.engine
            assert engine.status(asyncio.get_running_loop().time()).state != "running"
            return truth.truths, root, dict(inst.models)

    truths, root, models = run_virtual_strict(main())
    spectra = [pd.read_parquet(p) for p in sorted((root / "eis").iterdir())]
    assert len(spectra) == len(truths) == 2
    for f, ref in zip(spectra, truths, strict=True):
        z = f["z_real_ohm"].to_numpy() + 1j * f["z_imag_ohm"].to_numpy()
        err = np.abs(z - ref) / np.abs(ref)
        assert np.median(err) < 2e-3 and err.max() < 1e-2  # the simulated 0.1 % noise
    # every instrument ended in its safe state: the VMP-300's channels are stopped
    vmp = next(m for m in models.values() if isinstance(m, BioLogicSim))
    assert not any(ch.running for ch in vmp.instrument.channels)


# --------------------------------------------------------------------------- before the run

VMP3 = STATIONS["biologic"].replace("model: VMP-300", "model: VMP3")
#: the line of PROTOCOL's 7 MHz EIS step
EIS_LINE = next(n for n, t in enumerate(PROTOCOL.splitlines(), 1) if "EIS from 7 MHz" in t)


@pytest.mark.parametrize(
    ("station", "named"),
    [(VMP3, "'vmp' (BioLogic VMP3)"), (STATIONS["gamry"], "'eis' (Gamry Interface 1000)")],
    ids=["vmp3", "gamry"],
)
@pytest.mark.parametrize("sim", [True, False], ids=["sim", "hardware"])
def test_7_mhz_beyond_the_instrument_is_refused_before_the_run(
    station: str, named: str, sim: bool, tmp_path: Path
) -> None:
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    (tmp_path / "s.yaml").write_text(station)
    out = tmp_path / "runs"
    args = ["run", str(tmp_path / "p.yaml"), "--station", str(tmp_path / "s.yaml"),
            "--out", str(out), "-q"]  # fmt: skip
    result = runner.invoke(app, [*args, "--sim"] if sim else args)
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    where = f"{tmp_path / 'p.yaml'}:{EIS_LINE}: sequence.1.steps.0: "
    assert first.startswith(f"{where}EIS up to 7 MHz")
    assert named in first and "1 MHz" in first
    assert "nothing was started" in result.output and "Traceback" not in result.output
    assert not out.exists()  # no run directory


def test_validate_checks_the_station_too(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    (tmp_path / "vmp3.yaml").write_text(VMP3)
    (tmp_path / "vmp300.yaml").write_text(STATIONS["biologic"])
    p = str(tmp_path / "p.yaml")
    bad = runner.invoke(app, ["validate", p, "--station", str(tmp_path / "vmp3.yaml")])
    assert bad.exit_code == 2
    assert f"{p}:{EIS_LINE}: sequence.1.steps.0: EIS up to 7 MHz" in bad.output
    assert "1 step(s) beyond what station 'vmp', position 'A1' reaches" in bad.output
    good = runner.invoke(app, ["validate", p, "--station", str(tmp_path / "vmp300.yaml")])
    assert good.exit_code == 0, good.output
    assert "fits station 'vmp', position 'A1'" in good.output and "7 MHz" in good.output
    missing = runner.invoke(app, ["validate", p, "--station", str(tmp_path / "vmp300.yaml"),
                                  "--position", "B9"])  # fmt: skip
    assert missing.exit_code == 2 and "no position 'B9'" in missing.output


def test_a_library_protocol_with_eis_checkpoints_dry_runs_on_the_built_in_station(
    tmp_path: Path,
) -> None:
    """``labrig run long_term_eis --sim``: MACCOR cycling, EIS on the VMP-300 (7 MHz)."""
    result = runner.invoke(app, ["run", "long_term_eis", "--sim", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    spectra = [pd.read_parquet(p) for p in sorted((run_dir / "eis").iterdir())]
    assert [len(f) for f in spectra] == [82, 82]  # 7 MHz to 50 mHz, 10 per decade
    assert all(f["frequency_Hz"].iloc[0] == pytest.approx(7e6) for f in spectra)
    events = _events(run_dir)
    assert events[-1]["data"]["state"] == "finished"
    assert not [e for e in events if e["kind"] == "fault"]
    cycles = pd.read_parquet(run_dir / "cycles.parquet")
    assert len(cycles) == 101

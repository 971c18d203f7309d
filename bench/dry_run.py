"""Dry-run benchmark: the 1000-cycle 1C protocol with 0.1C check-ups and EIS, 10 s logging.

Prints wall time, rows written, simulated hours and the speed-up over real time, for the
in-process simulated station and through the built-in simulated station's drivers (MACCOR
over MacNet, EIS on a BioLogic VMP-300 over the simulated EClib). Targets: < 30 s in
process; < 10 s through the wire-level simulator (stretch < 5 s). Reference: PyBaMM's
single-particle model needs about 10 s for 1000 cycles of physics alone on these machines.
``--station all`` adds the same station with its EIS on a PalmSens (MethodSCRIPT over
loopback TCP), run in the same process, and prints the ratio.

    python bench/dry_run.py [--protocol endurance_1c_checkups]
                            [--station wire|inprocess|palmsens|both|all]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from labrig.orchestrator.clock import new_virtual_loop
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import (
    DEFAULT_STATION,
    INPROCESS_STATION,
    InstrumentConfig,
    StationConfig,
)
from labrig.protocols.loader import dump_protocol_yaml, load_protocol


def _wire_station() -> StationConfig:
    return DEFAULT_STATION  # MACCOR over MacNet, BioLogic VMP-300 over the simulated EClib


def _palmsens_station() -> StationConfig:
    """The built-in station with its EIS on a PalmSens per position instead."""
    instruments = dict(DEFAULT_STATION.instruments)
    instruments["eis"] = InstrumentConfig(driver="palmsens", address="serial://x", channels=8)
    return StationConfig(name="sim-palmsens", instruments=instruments,
                         positions=DEFAULT_STATION.positions)  # fmt: skip


def bench(protocol_name: str, station: StationConfig, label: str) -> float:
    proto = load_protocol(protocol_name)
    with tempfile.TemporaryDirectory() as tmp:
        req = RunRequest(
            protocol=proto,
            protocol_yaml=dump_protocol_yaml(proto),
            out_dir=Path(tmp),
            station=station,
            sim=True,
        )
        t0 = time.perf_counter()
        with asyncio.Runner(loop_factory=new_virtual_loop) as runner:
            outcome, _root = runner.run(execute_run(req))
        wall = time.perf_counter() - t0
    hours = outcome.run_time_s / 3600
    print(f"[{label}] {proto.name}")
    print(f"  state           {outcome.state.value} {outcome.reason or ''}")
    print(f"  wall time       {wall:8.2f} s")
    print(f"  rows written    {outcome.rows:>10,}")
    print(f"  cycles          {outcome.cycles:>10,}")
    print(f"  simulated       {hours:10,.0f} h ({hours / 24:,.0f} days)")
    print(f"  speed-up        {outcome.run_time_s / wall:10,.0f} x real time")
    print(f"  rows/s          {outcome.rows / wall:10,.0f}")
    print(f"  vs PyBaMM SPM physics alone (~10 s): {wall / 10.0:.2f}x")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="endurance_1c_checkups")
    ap.add_argument(
        "--station", choices=["inprocess", "wire", "palmsens", "both", "all"], default="both"
    )
    args = ap.parse_args()
    if args.station in ("inprocess", "both", "all"):
        bench(args.protocol, INPROCESS_STATION, "in-process simulated station (target < 30 s)")
    wire = palm = None
    if args.station in ("wire", "both", "all"):
        label = "through the MacNet and BioLogic drivers + simulators (target < 10 s)"
        wire = bench(args.protocol, _wire_station(), label)
    if args.station in ("palmsens", "all"):
        label = "reference: the same with EIS on a PalmSens (MethodSCRIPT)"
        palm = bench(args.protocol, _palmsens_station(), label)
    if wire is not None and palm is not None:
        print(f"BioLogic / PalmSens EIS station wall time: {wire / palm:.2f}x")


if __name__ == "__main__":
    main()

"""What labs do to labrig, as figures (issue: surviving what labs do to it).

    python bench/faults.py [--restarts 10] [--moments 20] [--seed 12] [--span 10]
                           [--only restarts|damage|signals]

1. DAEMON RESTARTS: a simulated MACCOR and a simulated PalmSens, each in its own process
   on a fast real clock (the instruments outlive the daemon), 4 runs under ``labrig serve``
   (2 of them sharing the PalmSens channel ``eis/0``); SIGTERM (runs paused at a safe
   point), ``labrig serve`` again, ``--restarts`` times: runs that continued after each
   restart out of (runs x restarts), then the rows each run stored, lost (gaps in the
   tester's record numbers) and duplicated.
2. JOURNAL / STAGING DAMAGE: ``run_damage_drills()`` of ``bench/faults_damage.py`` when
   that file is there (15 kinds of damage: detected, reported, silent).
3. SIGNALS: SIGINT or SIGTERM to ``labrig run`` at ``--moments`` seeded moments after its
   first line ran (0 to ``--span`` s: loading, opening, running): final state in
   ``run.json`` (or no run directory, with the command saying nothing was started), the
   message, and the tester's own channel state read back from the simulator.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from labrig.orchestrator.daemon import request  # noqa: E402
from tests.procs import (  # noqa: E402
    FINAL,
    event_count,
    run_meta,
    serve,
    signal_run,
    simulator,
    stop,
    wait_until,
)

RESTART_PROTOCOL = """\
name: restart bench
cell: {{cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}}
limits: {{voltage_V: [2.0, 3.8], current_abs_mA: 10}}
defaults: {{record: {{every_s: 30}}}}
sequence:
  - label: aging
    repeat: {cycles}
    steps:
      - Charge at 1C until 3.68 V
{eis}      - Discharge at 1C until 2.28 V
"""
EIS_LINE = "      - EIS from 10 kHz to 10 Hz, 5 per decade, 10 mV amplitude at OCV\n"


def _rows(root: Path) -> tuple[int, int, int]:
    """(rows stored, rows lost, rows duplicated) of one run, from the tester's numbers."""
    try:
        seq = pq.read_table(root / "data").column("record_seq").to_numpy()
    except (OSError, ValueError):
        return 0, 0, 0
    unique = np.unique(seq)
    block, rec = unique >> 32, unique & 0xFFFFFFFF
    lost = sum(int(rec[block == b].max()) - int((block == b).sum()) for b in np.unique(block))
    return len(seq), lost, len(seq) - len(unique)


def restart_drill(restarts: int, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    with simulator("maccor", speed=4000) as maccor, simulator("palmsens", speed=4000) as palmsens:
        station = folder / "station.yaml"
        station.write_text(
            "name: lab\ninstruments:\n"
            f"  cycler: {{driver: maccor, address: '{maccor}', channels: 8}}\n"
            f"  eis: {{driver: palmsens, address: '{palmsens}', channels: 1}}\n"
            "positions:\n"
            "  - {name: A1, cycler: cycler/0, impedance: eis/0}\n"
            "  - {name: A2, cycler: cycler/1, impedance: eis/0}\n"
            "  - {name: A3, cycler: cycler/2}\n"
            "  - {name: A4, cycler: cycler/3}\n"
        )
        runs, log = folder / "runs", folder / "serve.log"
        cycles = 6 * restarts + 6  # outlives every restart
        with_eis = RESTART_PROTOCOL.format(cycles=cycles, eis=EIS_LINE)
        plain = RESTART_PROTOCOL.format(cycles=cycles, eis="")
        proc = serve(runs, station, log)
        ids = []
        for pos, text in (("A1", with_eis), ("A2", with_eis), ("A3", plain), ("A4", plain)):
            reply = request(runs, {"op": "submit", "protocol_yaml": text, "position": pos,
                                   "run_id": f"bench-{pos}"})  # fmt: skip
            ids.append(reply["run_id"])
        continued = attempts = paused_ok = 0

        def moved(run_ids: list[str], since: dict[str, int]) -> Callable[[], bool]:
            """Every run of ``run_ids`` recorded more than ``since`` says, or ended."""
            return lambda: all(event_count(runs / r) > since[r] or _ended(runs, r)
                               for r in run_ids)  # fmt: skip

        for _ in range(restarts):
            # stop once every unfinished run has moved since the last start
            wait_until(moved(ids, {r: event_count(runs / r) for r in ids}), 120)
            stop(proc, timeout_s=120)
            going = [r for r in ids if not _ended(runs, r)]
            paused_ok += sum(run_meta(runs / r).get("resumable") is True for r in going)
            proc = serve(runs, station, log)
            for r in going:
                attempts += 1
                if wait_until(moved([r], {r: event_count(runs / r)}), 90):
                    continued += run_meta(runs / r).get("state") in ("running", "finished")
        wait_until(lambda: all(_ended(runs, r) for r in ids), 600)
        stop(proc, timeout_s=120)
    rows = [_rows(runs / r) for r in ids]
    return {
        "restarts": restarts,
        "runs": len(ids),
        "attempts": attempts,
        "continued": continued,
        "paused_resumable": paused_ok,
        "finished": sum(run_meta(runs / r).get("state") == "finished" for r in ids),
        "rows": sum(r[0] for r in rows),
        "lost": sum(r[1] for r in rows),
        "duplicated": sum(r[2] for r in rows),
        "tracebacks": log.read_text().count("Traceback"),
        "states": {
            r: (run_meta(runs / r).get("state"), run_meta(runs / r).get("reason")) for r in ids
        },
    }


def _ended(runs: Path, run_id: str) -> bool:
    return run_meta(runs / run_id).get("state") in FINAL


# ---------------------------------------------------------------------- 3. signals
def signal_moment(address: str, folder: Path, sig: signal.Signals, delay_s: float
                  ) -> dict[str, Any]:  # fmt: skip
    """``sig`` ``delay_s`` after labrig's first line ran (a moment on the wall clock:
    loading, opening or running, as the machine's load has it)."""
    got = signal_run(address, folder, sig, delay_s=delay_s)
    final = got["state"] is None or got["state"] in FINAL
    return {
        **got,
        "ok_final": final and got["said"] and got["code"] == 128 + int(sig),
        "ok_safe": got["channel"] != "running",
        "traceback": "Traceback" in got["output"],
    }


def signal_drill(moments: int, seed: int, folder: Path, span_s: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    plan = [(rng.choice([signal.SIGINT, signal.SIGTERM]), rng.uniform(0.0, span_s))
            for _ in range(moments)]  # fmt: skip
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    with simulator("maccor", speed=4000) as address:
        for i, (sig, delay) in enumerate(plan):
            sub = folder / f"m{i:02d}"
            sub.mkdir()
            out.append(signal_moment(address, sub, sig, delay))
    return out


# ---------------------------------------------------------------------- 2. damage
def damage_drills() -> dict[str, Any] | None:
    path = Path(__file__).with_name("faults_damage.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("faults_damage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: dict[str, Any] = module.run_damage_drills()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--moments", type=int, default=20)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--span", type=float, default=10.0, help="signals 0..SPAN s after start")
    ap.add_argument("--only", choices=["restarts", "damage", "signals"], action="append",
                    help="run only this section (repeatable)")  # fmt: skip
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="labrig-faults-"))
    only = set(args.only or ["restarts", "damage", "signals"])
    if "restarts" in only:
        print_restarts(args.restarts, folder)
    if "damage" in only:
        print_damage()
    if "signals" in only:
        print_signals(args.moments, args.seed, folder, args.span)


def print_restarts(restarts: int, folder: Path) -> None:
    t0 = time.perf_counter()
    r = restart_drill(restarts, folder / "restarts")
    print(f"DAEMON RESTARTS ({r['runs']} runs, 2 sharing eis/0; SIGTERM + serve x{r['restarts']},"
          f" {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    print(
        f"  runs continued after a restart: {r['continued']}/{r['attempts']}"
        f" (paused resumable at the stop: {r['paused_resumable']}/{r['attempts']})"
    )
    print(f"  runs finished: {r['finished']}/{r['runs']}; rows stored {r['rows']:,}, "
          f"lost {r['lost']}, duplicated {r['duplicated']}; tracebacks in the daemon's log "
          f"{r['tracebacks']}")  # fmt: skip
    for run_id, (state, reason) in r["states"].items():
        if state != "finished":
            print(f"  {run_id}: {state} ({reason})")


def print_damage() -> None:
    print("JOURNAL / STAGING DAMAGE")
    damage = damage_drills()
    if damage is None:
        print("  not available (bench/faults_damage.py is not in this tree)")
    else:
        for key, value in damage.items():
            if not isinstance(value, dict):
                print(f"  {key}: {value}")
                continue
            print(f"  {key}:")
            for name, row in value.items():
                if isinstance(row, dict):  # one drill: its result first, then why
                    text = " ".join(str(row[k]) for k in ("result", "message") if k in row)
                else:
                    text = str(row)
                print(f"    {name:38s} {text[:140]}")


def print_signals(count: int, seed: int, folder: Path, span_s: float) -> None:
    t0 = time.perf_counter()
    moments = signal_drill(count, seed, folder / "signals", span_s)
    n = len(moments)
    print(
        f"SIGNALS to labrig run at {n} seeded moments (0-{span_s:g} s after its first line; "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    print(f"  final states written (and said so): {sum(m['ok_final'] for m in moments)}/{n}; "
          f"safe states reached (tester's channel not running): "
          f"{sum(m['ok_safe'] for m in moments)}/{n}; tracebacks "
          f"{sum(m['traceback'] for m in moments)}")  # fmt: skip
    print(
        f"  moments inside a started run: {sum(m['run_dir'] for m in moments)}/{n}, "
        f"before it (nothing started): {sum(not m['run_dir'] for m in moments)}/{n}"
    )
    for m in moments:
        flag = "" if m["ok_final"] and m["ok_safe"] else "   <-- NOT OK"
        print(f"    {m['signal']:7} at {m['delay_s']:4.2f} s: exit {m['code']}, run.json "
              f"{m['state'] or '(none)'}, channel {m['channel']}{flag}")  # fmt: skip


if __name__ == "__main__":
    main()

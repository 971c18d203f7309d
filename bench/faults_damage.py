"""Journal and staging damage drills: 15 kinds of damage to a crashed run's directory,
then ``resume``: each must be detected and reported, never resumed silently.

    python bench/faults_damage.py

Each drill runs a simulated cell (the in-process channel, virtual clock) with the store
as on hardware (every collection staged, journal in WAL mode), copies its run
directory at a moment in cycle 8 as a ``kill -9`` would leave it (the instrument goes on
with its block), damages the copy, and resumes it against the same instrument. Outcomes:

- ``detected``: the resume refused with :class:`RunDamaged` (what is damaged, what the
  instrument can give back); the data files were left as they were and the instrument's
  block was not stopped;
- ``repaired``: the damage touched only a copy of what the intact journal holds
  (``events.jsonl``); the resume rebuilt it, said so in ``run.json``, and the run's data
  equal the undamaged control's;
- ``silent``: the resume went on as if nothing had happened.

``run_damage_drills()`` returns the figures (``bench/faults.py`` prints them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from labrig.drivers.capabilities import ChannelState  # noqa: E402
from labrig.orchestrator.clock import new_virtual_loop  # noqa: E402
from labrig.orchestrator.drills import _bindings  # noqa: E402
from labrig.orchestrator.executor import RunOptions  # noqa: E402
from labrig.orchestrator.run.damage import RunDamaged  # noqa: E402
from labrig.orchestrator.runner import RunRequest, execute_run, resume_run  # noqa: E402
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text  # noqa: E402

PROTOCOL = """\
name: damage drill
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 1}}
sequence:
  - label: aging
    repeat: 10
    steps: [Charge at 1C until 3.68 V, Rest for 10 min, Discharge at 1C until 2.28 V]
"""
STAGE_EVERY_S = 0.0  # every collection staged (10 s on hardware is hours of virtual time)
KILL_AT_S = 7.5 * 2.2 * 3600  # in cycle 8 (a cycle is about 2.2 h simulated)
OPTIONS = RunOptions(poll_s=30.0)


# ---------------------------------------------------------------------- kinds of damage
def _flip(path: Path, *fractions: float) -> None:
    data = bytearray(path.read_bytes())
    for f in fractions:
        i = min(len(data) - 1, int(len(data) * f))
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _wal(run: Path) -> Path:
    return run / "journal.sqlite-wal"


def _live(run: Path) -> tuple[int, int]:
    """(frame size, frames of the WAL's current generation): the frames SQLite reads;
    those after them are left over from before its last checkpoint."""
    data = _wal(run).read_bytes()
    page = int.from_bytes(data[8:12], "big")
    salts = data[16:24]
    frame, n = 24 + page, 0
    while (
        32 + (n + 1) * frame <= len(data)
        and data[32 + n * frame + 8 : 32 + n * frame + 16] == salts
    ):
        n += 1
    return frame, n


def _wal_cut(run: Path, mid_frame: bool) -> None:
    """Cut the WAL in the middle of its live frames. At a frame boundary SQLite then
    reads an older position, and nothing in the file itself says so."""
    frame, n = _live(run)
    end = 32 + (n // 2) * frame + (frame // 3 if mid_frame else 0)
    _wal(run).write_bytes(_wal(run).read_bytes()[:end])


def _wal_flip(run: Path) -> None:
    frame, n = _live(run)
    data = bytearray(_wal(run).read_bytes())
    data[32 + (n // 2) * frame + 24 + 100] ^= 0xFF  # inside a live frame's page
    _wal(run).write_bytes(bytes(data))


def _db_flip(run: Path) -> None:
    """Flip a byte in 3 event records of the database file, in pages SQLite reads from it
    (not superseded by a newer copy in the WAL: flips there change nothing). Until its
    first checkpoint a young journal lives in its WAL, so the run is checkpointed first,
    as an earlier stop and resume of it would have done."""
    import sqlite3

    db = run / "journal.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    live: set[int] = set()
    if _wal(run).exists():
        frame, n = _live(run)
        wal = _wal(run).read_bytes()
        live = {int.from_bytes(wal[32 + i * frame : 36 + i * frame], "big") for i in range(n)}
    spots = []
    at = data.find(b'"kind"')
    while at >= 0 and len(spots) < 3:
        if at // page + 1 not in live and (not spots or at // page != spots[-1] // page):
            spots.append(at)
        at = data.find(b'"kind"', at + 1)
    for at in spots:
        data[at + 9] ^= 0x01  # a letter of the event's kind
    db.write_bytes(bytes(data))


def _staging(run: Path) -> list[Path]:
    return sorted((run / "data").glob("staging-*.arrow"))


def _staging_gap(run: Path) -> None:
    """Remove one batch from the middle of the staging log (a sequence gap)."""
    import pyarrow as pa

    path = max(_staging(run), key=lambda p: p.stat().st_size)
    with pa.OSFile(str(path), "rb") as f:
        reader = pa.ipc.open_stream(f)
        items = []
        while True:
            try:
                items.append(reader.read_next_batch_with_custom_metadata())
            except StopIteration:
                break
    if len(items) < 3:
        # one large batch: split it, keeping its first and last thirds
        batch, meta = items[0]
        n = batch.num_rows
        items = [(batch.slice(0, n // 3), meta), (batch.slice(2 * n // 3), meta)]
    else:
        del items[len(items) // 2]
    with pa.OSFile(str(path), "wb") as out, pa.ipc.new_stream(out, items[0][0].schema) as w:
        for batch, meta in items:
            w.write_batch(batch, custom_metadata=meta)


def _older_journal(run: Path, older: Path) -> None:
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (run / name).unlink(missing_ok=True)
        if (older / name).exists():
            shutil.copy2(older / name, run / name)


def _chunk(run: Path) -> Path:
    return sorted((run / "data").glob("part-*.parquet"))[0]


KINDS: dict[str, Callable[[Path], None]] = {
    "WAL truncated (mid-frame)": lambda r: _wal_cut(r, True),
    "WAL truncated at a frame boundary": lambda r: _wal_cut(r, False),
    "WAL bytes flipped": _wal_flip,
    "journal db deleted": lambda r: (r / "journal.sqlite").unlink(),
    "all journal files deleted": lambda r: [p.unlink() for p in r.glob("journal.sqlite*")],
    "journal db bytes flipped (3 places)": _db_flip,
    "journal replaced by an older copy": lambda r: None,  # applied with the older copy
    "staging truncated to half": lambda r: [_cut(p, 0.5) for p in _staging(r)],
    "staging bytes flipped (3 places)": lambda r: _flip(
        max(_staging(r), key=lambda p: p.stat().st_size), 0.35, 0.6, 0.85
    ),
    "staging deleted": lambda r: [p.unlink() for p in _staging(r)],
    "staging sequence gap": _staging_gap,
    "events.jsonl truncated": lambda r: _cut(r / "events.jsonl", 0.5),
    "chunk file deleted": lambda r: _chunk(r).unlink(),
    "chunk bytes flipped": lambda r: _flip(_chunk(r), 0.5),
    "chunk truncated": lambda r: _cut(_chunk(r), 0.7),
}


# ---------------------------------------------------------------------- one drill
def _digest(run: Path) -> dict[str, str]:
    """The files that hold data, by content (a refused resume must not change them)."""
    names = [run / "events.jsonl", *sorted((run / "data").glob("*"))]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in names if p.is_file()}


async def _crashed(work: Path, kind: str) -> tuple[Path, Any, Path | None]:
    """A run copied as a kill -9 at KILL_AT_S would leave it; its instrument goes on."""
    proto = load_protocol_text(PROTOCOL, source_name="drill.yaml")
    bindings = _bindings(proto, seed=7)
    req = RunRequest(
        protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=work / "live",
        options=OPTIONS, durable=False, staging=True, stage_every_s=STAGE_EVERY_S,
    )  # fmt: skip
    execs: list[Any] = []
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(execute_run(req, bindings=bindings, on_executor=execs.append))
    older: Path | None = None
    t0 = loop.time()
    if kind == "journal replaced by an older copy":
        await asyncio.wait({task}, timeout=KILL_AT_S * 0.6)
        (live,) = (work / "live").iterdir()
        older = work / "older"
        older.mkdir()
        for p in live.glob("journal.sqlite*"):
            shutil.copy2(p, older / p.name)
    await asyncio.wait({task}, timeout=max(0.0, t0 + KILL_AT_S - loop.time()))
    (live,) = (work / "live").iterdir()
    victim = work / live.name
    shutil.copytree(live, victim)  # the disk as the killed process left it
    execs[-1].abandon()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return victim, bindings, older


async def _drill(work: Path, kind: str | None) -> dict[str, Any]:
    victim, bindings, older = await _crashed(work, kind or "control")
    if kind == "journal replaced by an older copy":
        assert older is not None
        _older_journal(victim, older)
    elif kind is not None:
        KINDS[kind](victim)
    before = _digest(victim)
    try:
        outcome, _root = await resume_run(
            victim, bindings=bindings, options=OPTIONS, durable=False, staging=True,
            stage_every_s=STAGE_EVERY_S,
        )  # fmt: skip
    except RunDamaged as exc:
        status = await bindings.cycler.status()
        return {
            "result": "detected",
            "message": str(exc),
            "files_unchanged": _digest(victim) == before,
            "instrument_running": status.state == ChannelState.running,
        }
    except Exception as exc:  # refused, but not with the typed error
        return {"result": "error", "message": f"{type(exc).__name__}: {exc}"}
    import json

    meta = json.loads((victim / "run.json").read_text())
    seq = pq.read_table(victim / "data", columns=["record_seq"]).column(0).to_numpy()
    return {
        "result": "resumed" if kind is None else "repaired" if meta.get("repairs") else "silent",
        "message": "; ".join(meta.get("repairs", [])),
        "state": outcome.state.value,
        "rows": len(seq),
        "unique": len(set(seq.tolist())) == len(seq),
    }


def drill(kind: str | None) -> dict[str, Any]:
    """One drill: ``kind`` of damage (None: the undamaged control); see the docstring."""
    return _one(kind)


def _one(kind: str | None) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="labrig-damage-") as d,
        asyncio.Runner(loop_factory=new_virtual_loop) as r,
    ):
        return r.run(_drill(Path(d), kind))


def run_damage_drills(kinds: list[str] | None = None) -> dict[str, Any]:
    """Every kind of damage once, and an undamaged control; returns the figures."""
    control = _one(None)
    results = {k: _one(k) for k in (kinds or list(KINDS))}
    for r in results.values():
        if r["result"] == "repaired" and (r["rows"] != control["rows"] or not r["unique"]):
            r["result"] = "silent"  # rebuilt, but the data differ from the control's
    n = len(results)
    detected = sum(r["result"] in ("detected", "repaired") for r in results.values())
    silent = sum(r["result"] == "silent" for r in results.values())
    refused_clean = sum(
        r.get("files_unchanged", False) and r.get("instrument_running", False)
        for r in results.values()
        if r["result"] == "detected"
    )
    return {
        "summary": f"journal/staging damage of {n} kinds -> {detected}/{n} detected and "
        f"reported, {silent} silent",
        "control (no damage)": f"{control['result']}, {control['state']}, {control['rows']:,} rows",
        "refusals that left data files and the instrument's block untouched": (
            f"{refused_clean}/{sum(r['result'] == 'detected' for r in results.values())}"
        ),
        "kinds": results,
    }


def main() -> None:
    res = run_damage_drills()
    for kind, r in res["kinds"].items():
        print(f"{kind:38s} {r['result']:9s} {r['message'][:150]}")
    print(f"control (no damage): {res['control (no damage)']}")
    print(
        "refusals that left data files and the instrument's block untouched: "
        + res["refusals that left data files and the instrument's block untouched"]
    )
    print(res["summary"])


if __name__ == "__main__":
    main()

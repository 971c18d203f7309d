"""A damaged run is never resumed silently.

Before a run is resumed its journal is checked as a whole (write-ahead log frame by
frame, every page, every entry, the events as one checksummed sequence), its data files
too (every chunk against its checksum, the staging log's checksums and links, the rows
the journal says the run held), and then the instrument's own position: the journal
commits a block before it is sent, so an instrument on a later block than the journal
knows means the journal lost commits. Any of these raises :class:`RunDamaged`, before
anything in the run directory is changed and before anything is sent to the instrument.

The user then chooses: ``labrig resume --from-instrument`` reads the records back from
the instrument's own record positions (it keeps the whole test), sets the damaged files
aside and ends the run, its instrument untouched; or ``labrig resume --abort`` puts the
instrument in its safe state and ends the run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from labrig.drivers.capabilities import RECORD_COLUMNS, CyclerChannel, InstrumentError

from ..journal import Journal, JournalCorrupt
from ..station import StationConfig
from ..store import RunStore, StoreDamaged
from ..store.reopen import ChunkCheck, reopen
from .bindings import RunBindings

__all__ = [
    "Recovered",
    "RunDamaged",
    "abort_run",
    "check_instrument",
    "find_damage",
    "open_checked",
    "recover_from_instrument",
    "recover_run",
]


class RunDamaged(RuntimeError):
    """What of a run is damaged, and what the instrument can give back."""

    def __init__(self, run_dir: Path, damage: list[str], intact_seq: int | None) -> None:
        self.run_dir = run_dir
        self.damage = damage
        self.intact_seq = intact_seq
        after = "" if intact_seq is None else f" after record #{intact_seq}"
        super().__init__(
            f"{run_dir.name} is damaged and was not resumed: " + "; ".join(damage) + ". "
            f"Nothing in it was changed and its instrument was left as it is. The instrument "
            f"keeps its own records of the test: `labrig resume --from-instrument {run_dir}` "
            f"reads them back{after} into recovered/, sets the damaged files aside in "
            f"damaged/ and ends the run; `labrig resume --abort {run_dir}` stops the "
            f"instrument's block (safe state) and ends the run."
        )


def open_checked(run_dir: Path, *, durable: bool, **store_kw: Any) -> tuple[Journal, RunStore]:
    """The run's journal and store, each checked as a whole and against each other;
    damage raises :class:`RunDamaged` naming all of it (a damaged journal: the data
    files' damage too). The chunks are checked on a thread meanwhile."""
    meta = json.loads((run_dir / "run.json").read_text())
    chunks = ChunkCheck(run_dir / "data", meta)
    try:
        journal = Journal.open_checked(run_dir / "journal.sqlite", durable=durable)
    except JournalCorrupt as exc:
        found = reopen(run_dir / "data", meta, None, durable=durable, check=True, chunks=chunks)
        intact = found.intact_seq if found.damage else None
        raise RunDamaged(run_dir, [f"journal: {exc}", *found.damage], intact) from None
    except BaseException:
        chunks.wait()
        raise
    try:
        store = RunStore.open_existing(
            run_dir, journal=journal, check=True, chunks=chunks, durable=durable, **store_kw
        )
    except StoreDamaged as exc:
        journal.close()
        raise RunDamaged(run_dir, exc.damage, exc.intact_seq) from None
    except BaseException:
        chunks.wait()
        journal.close()
        raise
    return journal, store


def _journal_blocks(journal: Journal) -> tuple[int, set[int]] | None:
    """(newest block id the journal knows, the block ids the instrument may be on)."""
    unit = journal.get("unit")
    if unit is None:
        return None
    snap = unit["after"] if unit["state"] == "done" else unit["before"]
    known = int(snap["block_id"])
    ok = {known}
    if unit.get("kind") == "block":
        block = int(unit["block_id"])
        known = max(known, block)
        ok = {block} if unit["state"] == "done" else {block, block - 1}
    return known, ok


async def check_instrument(run_dir: Path, cycler: CyclerChannel, journal: Journal) -> None:
    """The instrument's own position against the journal's (read only: nothing is sent
    that could change what the instrument does)."""
    try:
        status = await cycler.status()
    except InstrumentError:
        return  # cannot say: the resume itself will find out
    if status.block_id is None:
        return
    blocks = _journal_blocks(journal)
    if blocks is None:
        if status.block_id > 0:
            raise RunDamaged(
                run_dir,
                [f"the journal has no position, but the instrument is on block "
                 f"{status.block_id} (records up to #{status.last_seq})"],
                None,
            )  # fmt: skip
        return
    known, ok = blocks
    if status.block_id not in ok and status.block_id >= min(ok):
        raise RunDamaged(
            run_dir,
            [f"the journal's position is older than the instrument's: the journal knows "
             f"blocks up to {known}, the instrument is on block {status.block_id} (records "
             f"up to #{status.last_seq}); the journal lost commits"],
            journal.stored_seq(),
        )  # fmt: skip


@dataclass
class Recovered:
    rows: int
    first_seq: int
    last_seq: int
    path: Path
    set_aside: list[str]


def _set_aside(run_dir: Path, names: list[str]) -> list[str]:
    """Move files into damaged/ (never delete what might hold data)."""
    dest = run_dir / "damaged"
    dest.mkdir(exist_ok=True)
    moved = []
    for name in names:
        src = run_dir / name
        if src.exists():
            target = dest / name.replace("/", "__")
            shutil.move(str(src), str(target))
            moved.append(name)
    return moved


def _damaged_files(run_dir: Path, damage: list[str]) -> list[str]:
    names = ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"]
    text = " ".join(damage)
    for path in sorted((run_dir / "data").glob("*")):
        if path.name in text and path.name.endswith((".arrow", ".parquet")):
            names.append(f"data/{path.name}")
    return names if "journal" in text else names[3:]


async def recover_from_instrument(
    run_dir: Path, cycler: CyclerChannel, damage: RunDamaged
) -> Recovered:
    """Read every record the instrument keeps after the last intact one into
    ``recovered/records-from-instrument.parquet``, set the damaged files aside and end
    the run as ``failed`` with what was done. The instrument is only read."""
    after = -1 if damage.intact_seq is None else damage.intact_seq
    batch = await cycler.read_records(after)
    table = pa.table({c: getattr(batch, c) for c in RECORD_COLUMNS})
    out = run_dir / "recovered"
    out.mkdir(exist_ok=True)
    path = out / "records-from-instrument.parquet"
    pq.write_table(table, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    moved = _set_aside(run_dir, _damaged_files(run_dir, damage.damage))
    first = int(batch.seq[0]) if len(batch.seq) else after
    last = int(batch.seq[-1]) if len(batch.seq) else after
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text())
    meta.update(
        state="failed",
        reason=f"damaged ({'; '.join(damage.damage)}); {len(batch.seq)} records read back "
        f"from the instrument into recovered/ (#{first}..#{last}); the instrument's block "
        f"was left as it was",
        recovered={"rows": len(batch.seq), "file": "recovered/records-from-instrument.parquet",
                   "set_aside": moved, "at": time.time()},
    )  # fmt: skip
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(meta_path)
    return Recovered(len(batch.seq), first, last, path, moved)


# ---------------------------------------------------------------------- the user's choice


@contextlib.asynccontextmanager
async def _instrument(
    run_dir: Path, station: StationConfig | None, sim: bool | None, bindings: RunBindings | None
) -> AsyncIterator[RunBindings]:
    if bindings is not None:
        yield bindings
        return
    from labrig.protocols.loader import load_protocol_text

    from .instruments import open_cell_bindings

    meta = json.loads((run_dir / "run.json").read_text())
    st = station or StationConfig.model_validate(meta["station_config"])
    protocol = load_protocol_text((run_dir / "protocol.yaml").read_text(), source_name="x")
    sim_ = bool(meta.get("simulated")) if sim is None else sim
    async with open_cell_bindings(
        st, st.position(meta["position"]), protocol.cell, sim=sim_, seed=int(meta.get("seed", 0))
    ) as b:
        yield b


async def find_damage(run_dir: Path, cycler: CyclerChannel) -> RunDamaged | None:
    """What a resume would refuse, found the same way (nothing is changed)."""
    try:
        journal, store = open_checked(run_dir, durable=False)
    except RunDamaged as exc:
        return exc
    store.close()
    try:
        await check_instrument(run_dir, cycler, journal)
    except RunDamaged as exc:
        return exc
    finally:
        journal.close()  # nothing pending: nothing is committed
    return None


async def recover_run(
    run_dir: Path,
    *,
    station: StationConfig | None = None,
    sim: bool | None = None,
    bindings: RunBindings | None = None,
) -> Recovered:
    """``labrig resume --from-instrument``: see :func:`recover_from_instrument`."""
    async with _instrument(run_dir, station, sim, bindings) as b:
        damage = await find_damage(run_dir, b.cycler)
        if damage is None:
            raise ValueError(f"{run_dir.name} is not damaged: resume it with `labrig resume`")
        return await recover_from_instrument(run_dir, b.cycler, damage)


async def abort_run(
    run_dir: Path,
    *,
    station: StationConfig | None = None,
    sim: bool | None = None,
    bindings: RunBindings | None = None,
) -> None:
    """``labrig resume --abort``: the instrument to its safe state, the run ``aborted``."""
    async with _instrument(run_dir, station, sim, bindings) as b:
        await b.cycler.safe_state()
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text())
    meta.update(state="aborted", reason="aborted after damage was found (labrig resume --abort)")
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(meta_path)

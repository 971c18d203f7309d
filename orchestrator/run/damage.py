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
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from labrig.drivers.capabilities import (
    RECORD_COLUMNS,
    ChannelState,
    CyclerChannel,
    InstrumentError,
    RecordBatch,
    seq_text,
)

from ..journal import Journal, JournalCorrupt
from ..station import StationConfig
from ..store import RunStore, StoreDamaged
from ..store.reopen import ChunkCheck, reopen
from .bindings import RunBindings, bind_channel

__all__ = [
    "ChannelHeld",
    "Recovered",
    "RunDamaged",
    "abort_run",
    "check_instrument",
    "find_damage",
    "open_checked",
    "recover_from_instrument",
    "recover_run",
]


class ChannelHeld(RuntimeError):
    """The run's channel runs a test that is not one of the run's: nothing was sent."""


class RunDamaged(RuntimeError):
    """What of a run is damaged, and what the instrument can give back."""

    def __init__(self, run_dir: Path, damage: list[str], intact_seq: int | None) -> None:
        self.run_dir = run_dir
        self.damage = damage
        self.intact_seq = intact_seq
        after = "" if intact_seq is None or intact_seq < 0 else f" after {seq_text(intact_seq)}"
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
    if status.other_test is not None and status.state in (
        ChannelState.running,
        ChannelState.paused,
    ):
        raise ChannelHeld(
            f"{run_dir.name} was not resumed: its channel {cycler.name} holds another "
            f"test, {status.other_test} ({status.state.value}), not one of this run's; "
            f"nothing was sent to it. Resume the run once that test has ended."
        )
    if status.block_id is None:
        return  # no test of this run's on the channel (none yet, or another's)
    blocks = _journal_blocks(journal)
    if blocks is None:
        if status.block_id > 0:
            raise RunDamaged(
                run_dir,
                [f"the journal has no position, but the instrument is on block "
                 f"{status.block_id} (records up to {seq_text(status.last_seq)})"],
                None,
            )  # fmt: skip
        return
    known, ok = blocks
    if status.block_id not in ok and status.block_id >= min(ok):
        raise RunDamaged(
            run_dir,
            [f"the journal's position is older than the instrument's: the journal knows "
             f"blocks up to {known}, the instrument is on block {status.block_id} (records "
             f"up to {seq_text(status.last_seq)}); the journal lost commits"],
            journal.stored_seq(),
        )  # fmt: skip


@dataclass
class Recovered:
    rows: int
    first_seq: int
    last_seq: int
    path: Path
    set_aside: list[str]
    other_test: str | None = None  # the channel's current test, not one of the run's

    @property
    def span(self) -> str:
        """The records read back, as a person reads them."""
        return _span(self.first_seq, self.last_seq, self.rows)


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


def _stored_times(run_dir: Path, upto: int | None) -> tuple[npt.NDArray[np.int64], Any]:
    """Seq and run time of every row the run's intact data files hold (up to ``upto``),
    by seq; a file that cannot be read gives none."""
    from ..store.staging import read_staging

    tables: list[pa.Table] = []
    for path in sorted((run_dir / "data").glob("part-*.parquet")):
        with contextlib.suppress(OSError, pa.ArrowException):
            tables.append(pq.read_table(path, columns=["record_seq", "time_s"]))
    with contextlib.suppress(OSError, pa.ArrowException, ValueError):
        staged = read_staging(sorted((run_dir / "data").glob("staging-*.arrow")))
        tables.extend(b.table.select(["record_seq", "time_s"]) for b in staged.batches)
    if not tables:
        return np.empty(0, dtype=np.int64), np.empty(0)
    both = pa.concat_tables(tables)
    seq = both["record_seq"].to_numpy().astype(np.int64)
    time_s = both["time_s"].to_numpy().astype(np.float64)
    seq, first = np.unique(seq, return_index=True)
    keep = seq <= upto if upto is not None else np.ones(len(seq), dtype=bool)
    return seq[keep], time_s[first][keep]


def _block_anchor(run_dir: Path) -> tuple[int, float] | None:
    """(the newest record read before the journal's block began, the run time the block
    began at), if the journal is intact and its position is a block."""
    try:
        journal = Journal.open_checked(run_dir / "journal.sqlite", durable=False)
    except (JournalCorrupt, OSError, sqlite3.Error):
        return None
    try:
        unit = journal.get("unit")
        if unit is None or unit.get("kind") != "block" or "anchor" not in unit:
            return None
        return int(unit["before"]["read_seq"]), float(unit["anchor"])
    except (JournalCorrupt, KeyError, TypeError, ValueError):
        return None
    finally:
        journal.close()


def _on_run_clock(
    batch: RecordBatch,
    stored: tuple[npt.NDArray[np.int64], Any],
    anchor: tuple[int, float] | None,
) -> npt.NDArray[np.float64]:
    """The instrument's record times on the run's clock (the data's ``time_s``).

    Records whose seqs follow one another (a block's test) share one offset from the
    instrument's time to the run's: where the run stored one of them, the stored time
    gives it; the journal's block starts at its ``anchor`` (its first record after the
    newest one read before it), as the run dates it; a block neither dates goes on from
    the offset before it (the instrument's own chaining of block times; the host's gap
    between the two blocks is not known there)."""
    st_seq, st_time = stored
    seq, out = batch.seq, batch.time_s.astype(np.float64)
    cuts = np.flatnonzero(np.diff(seq) != 1) + 1
    offset = 0.0
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(seq)], strict=True):
        idx = np.searchsorted(st_seq, seq[lo:hi]).clip(max=max(len(st_seq) - 1, 0))
        hit = np.flatnonzero(st_seq[idx] == seq[lo:hi]) if len(st_seq) else idx[:0]
        if len(hit):
            offset = float(st_time[idx[hit[0]]]) - float(out[lo + hit[0]])
        elif anchor is not None and seq[lo] > anchor[0] and (lo == 0 or seq[lo - 1] <= anchor[0]):
            offset = anchor[1] - float(out[lo])
        out[lo:hi] += offset
    return out


async def recover_from_instrument(
    run_dir: Path, cycler: CyclerChannel, damage: RunDamaged
) -> Recovered:
    """Read every record the instrument keeps after the last intact one into
    ``recovered/records-from-instrument.parquet`` (dated on the run's clock where the
    run's intact rows say how: :func:`_on_run_clock`), set the damaged files aside and
    end the run as ``failed`` with what was done. The instrument is only read."""
    after = -1 if damage.intact_seq is None else damage.intact_seq
    other = None
    with contextlib.suppress(InstrumentError):
        other = (await cycler.status()).other_test
    # from one record earlier: the newest intact row puts its block on the run's clock
    read_from = after - 1 if after > 0 else after
    batch = await cycler.read_records(read_from)
    anchor = _block_anchor(run_dir)
    if anchor is not None and anchor[0] < read_from:
        anchor = None  # the block's first records are not among those read
    batch.time_s = _on_run_clock(batch, _stored_times(run_dir, damage.intact_seq), anchor)
    batch = batch.select(batch.seq > after)
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
    foreign = (
        f" (the channel's current test, {other}, belongs to another run: only this run's "
        f"tests were read)"
        if other is not None
        else ""
    )
    meta.update(
        state="failed",
        reason=f"damaged ({'; '.join(damage.damage)}); {len(batch.seq)} records read back "
        f"from the instrument into recovered/ ({_span(first, last, len(batch.seq))})"
        f"{foreign}; the instrument's block was left as it was",
        recovered={"rows": len(batch.seq), "file": "recovered/records-from-instrument.parquet",
                   "set_aside": moved, "at": time.time()},
    )  # fmt: skip
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(meta_path)
    return Recovered(len(batch.seq), first, last, path, moved, other)


def _span(first: int, last: int, rows: int) -> str:
    """The records read back, as a person reads them."""
    if rows == 0:
        return "none"
    return f"{seq_text(first)} to {seq_text(last)}"


# ---------------------------------------------------------------------- the user's choice


@contextlib.asynccontextmanager
async def _instrument(
    run_dir: Path, station: StationConfig | None, sim: bool | None, bindings: RunBindings | None
) -> AsyncIterator[RunBindings]:
    meta = json.loads((run_dir / "run.json").read_text())
    run_id = str(meta.get("run_id", run_dir.name))
    if bindings is not None:
        bind_channel(bindings.cycler, run_id, meta)
        yield bindings
        return
    from labrig.protocols.loader import load_protocol_text

    from .instruments import open_cell_bindings

    st = station or StationConfig.model_validate(meta["station_config"])
    protocol = load_protocol_text((run_dir / "protocol.yaml").read_text(), source_name="x")
    sim_ = bool(meta.get("simulated")) if sim is None else sim
    async with open_cell_bindings(
        st, st.position(meta["position"]), protocol.cell, sim=sim_, seed=int(meta.get("seed", 0))
    ) as b:
        bind_channel(b.cycler, run_id, meta)
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

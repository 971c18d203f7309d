"""`labrig resume` of a damaged run, for real: a MACCOR simulator in its own process, a
`labrig run` killed with kill -9, bytes flipped in the journal's WAL (or the journal
deleted). The resume refuses (exit 3) saying what is damaged, changes nothing and leaves
the tester's test running; `--from-instrument` then reads every record of the run's tests
back from the tester (none lost, none twice), sets the damaged files aside and ends the
run, the tester only read."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import stored_rows
from tests.procs import (
    LABRIG,
    event_count,
    kill,
    maccor_channel_state,
    maccor_station,
    run_dir,
    wait_until,
)
from tests.slow.test_kill9 import PROTOCOL, _start, tester

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
__all__ = ["tester"]  # the fixture


def _flip_live_wal_frame(run: Path) -> None:
    wal = run / "journal.sqlite-wal"
    data = bytearray(wal.read_bytes())
    frame = 24 + int.from_bytes(data[8:12], "big")
    assert len(data) >= 32 + frame, "no committed frame in the WAL"
    data[32 + 24 + 100] ^= 0xFF  # inside the first frame's page: every frame after fails
    wal.write_bytes(bytes(data))


def _digest(run: Path) -> dict[str, str]:
    files = [run / "events.jsonl", *sorted((run / "data").glob("*"))]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def _tester_files(address: str, root: Path) -> dict[int, int]:
    """Block id -> records in the data file of that block's test of the run in ``root``
    on channel 0, read with (1,7) by name, block after block until one is missing."""
    from labrig.drivers.maccor import MaccorCycler
    from labrig.drivers.maccor.codec import MacNetError
    from labrig.drivers.maccor.found import block_test_name, run_tag

    tag = run_tag(json.loads((root / "run.json").read_text())["run_id"])

    async def read() -> dict[int, int]:
        out: dict[int, int] = {}
        async with MaccorCycler.from_url(address, channels=8) as cycler:
            for k in range(1, 1000):
                ask = {"FileName": block_test_name(0, k, tag), "Offset": 0, "Len": 10**7}
                try:
                    res = await cycler.client.call(1, 7, 0, ask)
                except MacNetError:
                    return out
                out[k] = int(res["Len"])
        return out

    return asyncio.run(read())


def _read_back_whole(root: Path, address: str) -> None:
    """The recovered records are every record of every test of the run: 1..n in each
    block, all of a block that ended, up to the newest of the one still running."""
    seq = pq.read_table(root / "recovered" / "records-from-instrument.parquet")["seq"]
    seq = seq.to_numpy()
    assert len(seq) > 0 and len(np.unique(seq)) == len(seq)
    files = _tester_files(address, root)  # after the read-back: the last block has grown
    blocks = sorted(set((seq >> 32).tolist()))
    assert blocks == sorted(files), (blocks, files)
    for b in blocks:
        rec = np.sort(seq[seq >> 32 == b] & 0xFFFFFFFF)
        assert np.array_equal(rec, np.arange(1, len(rec) + 1)), f"gap in block {b}"
        if b != blocks[-1]:
            assert len(rec) == files[b], f"block {b}: {len(rec)} of {files[b]} records"
        else:
            assert 0 < len(rec) <= files[b]


def _killed_run(tester: str, tmp_path: Path) -> Path:
    """A `labrig run` on the tester killed with kill -9 after a few events."""
    (tmp_path / "drill.yaml").write_text(PROTOCOL)
    station = maccor_station(tmp_path, tester)
    out = tmp_path / "runs"
    proc = _start(["run", str(tmp_path / "drill.yaml"), "--station", str(station),
                   "--out", str(out)])  # fmt: skip
    wait_until(lambda: event_count(run_dir(out)) > 3, proc=proc)
    assert proc.poll() is None, "the run ended before it could be killed"
    kill(proc)
    (root,) = list(out.iterdir())
    return root


def test_a_damaged_run_is_refused_and_read_back_from_the_instrument(
    tester: str, tmp_path: Path
) -> None:
    root = _killed_run(tester, tmp_path)
    _flip_live_wal_frame(root)
    before = _digest(root)
    done = subprocess.run([*LABRIG, "resume", str(root), "-q"], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 3, done.stderr
    said = " ".join(done.stderr.split())
    assert "journal.sqlite-wal" in said and "fails its checksum" in said
    assert "--from-instrument" in said and "--abort" in said
    assert "Traceback" not in done.stderr
    assert _digest(root) == before  # nothing that holds data was rewritten
    assert json.loads((root / "run.json").read_text())["state"] == "running"
    # its block went on (running, or done on its own at the simulator's speed), not stopped
    assert maccor_channel_state(tester) in ("running", "done")
    done = subprocess.run([*LABRIG, "resume", str(root), "--from-instrument"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "read back from the instrument" in said
    assert re.search(r"\(block 1, record 1 to block \d+, record \d+\)", said), said
    _read_back_whole(root, tester)
    # the rows the run had stored come back equal, dated on the run's clock
    stored = stored_rows(root)
    table = pq.read_table(root / "recovered" / "records-from-instrument.parquet").to_pandas()
    mine = table.set_index("seq").loc[stored.record_seq.to_numpy()]
    assert len(stored) > 0
    assert np.allclose(mine.voltage_V.to_numpy(), stored.voltage_V.to_numpy())
    assert np.allclose(mine.time_s.to_numpy(), stored.time_s.to_numpy(), atol=1e-6)
    assert (root / "damaged" / "journal.sqlite-wal").exists()
    assert json.loads((root / "run.json").read_text())["state"] == "failed"
    assert maccor_channel_state(tester) in ("running", "done")


def test_a_deleted_journal_is_refused_and_every_record_read_back(
    tester: str, tmp_path: Path
) -> None:
    root = _killed_run(tester, tmp_path)
    for p in root.glob("journal.sqlite*"):
        p.unlink()
    done = subprocess.run([*LABRIG, "resume", str(root), "-q"], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 3, done.stderr
    said = " ".join(done.stderr.split())
    assert "journal.sqlite is missing" in said and "--from-instrument" in said
    assert "Traceback" not in done.stderr
    assert maccor_channel_state(tester) in ("running", "done")
    done = subprocess.run([*LABRIG, "resume", str(root), "--from-instrument"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _read_back_whole(root, tester)
    assert json.loads((root / "run.json").read_text())["state"] == "failed"
    assert maccor_channel_state(tester) in ("running", "done")

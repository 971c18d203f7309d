"""``labrig ls --lab``: one page of the lab's runs, answered before the full command line
(typer, rich, the protocol models, numpy) is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from labrig.orchestrator.lab.db import connect
from labrig.orchestrator.lab.lsview import PAGE, parse_ls
from labrig.orchestrator.lab.testing import LABRIG, TempLab, server_reachable

pytestmark = pytest.mark.timeout(120)


def test_parse_takes_only_what_it_knows() -> None:
    env = {"LABRIG_LAB": "postgresql://x@h/lab"}
    assert parse_ls(["ls", "--lab", "postgresql://a@b/c"], {}) == ("postgresql://a@b/c", False, -1)
    assert parse_ls(["ls", "--json", "--limit=5"], env) == ("postgresql://x@h/lab", True, 5)
    assert parse_ls(["ls", "--limit", "0"], env) == ("postgresql://x@h/lab", False, 0)
    for other in (["ls"], ["ls", "--help"], ["ls", "--runs", "r"], ["ls", "--limit", "x"],
                  ["ls", "--lab"], ["submit", "--lab", "u"], ["ls", "--limit", "-1"]):  # fmt: skip
        assert parse_ls(other, {} if other == ["ls"] else env) is None, other


@pytest.fixture(scope="module")
def many() -> Iterator[TempLab]:
    """A lab database of its own: the session's shared one holds other tests' runs, which
    would come first on the page and change the counts."""
    why = server_reachable()
    if why is not None:
        pytest.skip(f"no PostgreSQL for lab tests: {why}")
    with TempLab() as lab:
        _fill(lab)
        yield lab


def _fill(lab: TempLab) -> None:
    with connect(lab.url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO runs (run_id, agent, position, protocol, protocol_yaml, state, "
            "submitted_at) VALUES (%s, 'ls-pc', 'p0', 'p', 'x', %s, "
            "clock_timestamp() - make_interval(secs => %s))",
            [(f"ls-{i:04d}", "finished" if i % 4 else "failed", 10_000 - i) for i in range(120)],
        )


def _ls(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABRIG, "ls", "--lab", url, *args], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_ls_lab_prints_one_page_newest_first_with_counts(many: TempLab) -> None:
    done = _ls(many.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = [x for x in lines if x.startswith("ls-")]
    assert len(rows) == PAGE and rows[0].startswith("ls-0119")
    assert "--limit N for more" in lines[-1] and "90 finished, 30 failed" in lines[-1]
    every = _ls(many.url, "--limit", "0")
    assert len([x for x in every.stdout.splitlines() if x.startswith("ls-")]) == 120


def test_ls_lab_json_gives_every_run(many: TempLab) -> None:
    got = json.loads(_ls(many.url, "--json").stdout)
    assert got["total"] >= 120 and len(got["runs"]) == got["total"]


def test_ls_lab_loads_neither_typer_rich_numpy_nor_psycopg3(many: TempLab) -> None:
    """psycopg 3 alone takes longer to import than the whole command may take: ``ls``
    reads through psycopg2; nor does it read the package metadata (``labrig.__version__``)."""
    code = (
        "import sys; from labrig.orchestrator.lab.lsview import fast_ls; "
        f"assert fast_ls(['ls', '--lab', {many.url!r}]) == 0; "
        "print(sorted(m for m in ('typer', 'rich', 'numpy', 'pydantic', 'labrig.protocols', "
        "'psycopg', 'asyncio', 'importlib.metadata') if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_ls_lab_json_equals_the_psycopg3_reading(many: TempLab) -> None:
    """The rows psycopg2 reads for ``ls`` are those the rest of lab mode reads with
    psycopg 3 (same types: float epochs, bools, ints)."""
    from labrig.orchestrator.lab.queries import list_bookings, list_runs

    got = json.loads(_ls(many.url, "--json").stdout)
    with connect(many.url) as conn:
        want = {"runs": list_runs(conn), "bookings": list_bookings(conn)}
    assert got["runs"] == want["runs"] and got["bookings"] == want["bookings"]
    assert isinstance(got["runs"][0]["submitted"], float)


def test_ls_lab_of_a_database_without_the_lab_is_a_clear_error(many: TempLab) -> None:
    """A server that answers but holds no lab (here: the server's admin database)."""
    base, _, _ = many.url.rpartition("/")
    done = _ls(f"{base}/postgres")
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: lab database") and '"runs"' in done.stderr
    assert "Traceback" not in done.stderr


def test_ls_lab_unreachable_is_a_clear_error() -> None:
    done = _ls("postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 3 and done.stderr.startswith("error: lab database")
    assert "Traceback" not in done.stderr

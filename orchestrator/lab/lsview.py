"""``labrig ls --lab``: the lab's runs, one page of plain text, quickly.

The ``labrig`` command hands ``ls --lab`` here before it loads its sub-commands (typer,
rich, the protocol models, numpy): a lab of 10,000 runs answers in about the time
Python and psycopg take to start. The newest :data:`PAGE` runs are listed (``--limit N``
for more, ``--limit 0`` for all), then the number of runs in each state; ``--json``
gives every run (or ``--limit N``) with the active bookings. The database reads one page
through the index on ``submitted_at`` and counts states in one pass; the driver is
psycopg2 (:func:`.db.connect_reader`), which loads in a fraction of psycopg 3's time.

Anything this parser does not know (``--help``, a typo) goes to the full command line,
which explains it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from .db import LabUnavailable, connect_reader, reader_error, redact

__all__ = ["PAGE", "fast_ls", "parse_ls", "print_ls", "state_text"]

#: runs listed by default
PAGE = 50
_COLUMNS = ("run", "agent", "position", "protocol", "state", "cycle", "step")


def parse_ls(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, bool, int] | None:
    """``(url, as_json, limit)`` of ``ls --lab URL [--json] [--limit N]``; None when the
    arguments are anything else (including ``ls`` without a lab). ``limit`` -1: the
    default (one page of text, every run in JSON); 0: every run."""
    if not argv or argv[0] != "ls":
        return None
    url, as_json, limit = environ.get("LABRIG_LAB") or None, False, -1
    args = list(argv[1:])
    while args:
        a = args.pop(0)
        name, eq, value = a.partition("=")
        if name in ("--lab", "--limit") and not eq:
            if not args:
                return None
            value = args.pop(0)
        if name == "--lab":
            url = value
        elif name == "--limit":
            try:
                limit = int(value)
            except ValueError:
                return None
            if limit < 0:
                return None
        elif a == "--json" and not eq:
            as_json = True
        else:
            return None  # --runs, --help, anything else: the full command line
    return (url, as_json, limit) if url else None


def state_text(r: Mapping[str, Any]) -> str:
    """A run's state as ``ls`` shows it (with "agent offline" while it should run)."""
    s = str(r["state"])
    if s in ("claimed", "running", "paused") and not r["agent_online"]:
        age = r["heartbeat_age_s"]
        s += " (agent offline" + (f" {age:.0f} s)" if age is not None else ")")
    elif r.get("reason") and s not in ("running", "paused"):
        s += f" ({r['reason']})"
    return s


def _table(runs: list[dict[str, Any]]) -> list[str]:
    rows = [
        (str(r["run_id"]), str(r["agent"]), str(r["position"]), str(r["protocol"])[:40],
         state_text(r), "" if r["cycle"] is None else str(r["cycle"]), (r["step"] or "")[:40])
        for r in runs
    ]  # fmt: skip
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(_COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(_COLUMNS), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def print_ls(url: str, as_json: bool, limit: int, out: TextIO, err: TextIO) -> int:
    """Print the lab's runs; returns the exit code (3: the lab database is unreachable or
    refused the query)."""
    t0 = time.perf_counter()
    page = (100_000_000 if as_json else PAGE) if limit == -1 else (limit or 100_000_000)
    try:
        runs, bookings, counts = _read(url, page)
    except LabUnavailable as exc:
        err.write(f"error: {exc}\n")
        return 3
    total = sum(counts.values())
    if as_json:
        # one string from the C encoder: json.dump() writes each token on its own (10,000
        # runs: about a million writes, seconds)
        out.write(json.dumps({"runs": runs, "bookings": bookings, "total": total}, default=str))
        out.write("\n")
        return 0
    lines = [f"lab runs ({redact(url)})", *_table(runs)]
    for b in bookings:
        token = f", token {b['token']}" if b["token"] is not None else ""
        lines.append(f"{b['resource']}: {b['run_id']} ({b['holder']}) {b['state']}{token}")
    by_state = ", ".join(f"{n} {s}" for s, n in counts.items())
    more = "; --limit N for more, --limit 0 for all" if len(runs) < total else ""
    lines.append(f"newest {len(runs)} of {total} runs ({by_state or 'none'}){more}")
    out.write("\n".join(lines) + "\n")
    err.write(f"{total} runs, {len(runs)} shown in {1e3 * (time.perf_counter() - t0):.0f} ms\n")
    return 0


_Rows = list[dict[str, Any]]


def _read(url: str, page: int) -> tuple[_Rows, _Rows, dict[str, int]]:
    """(newest ``page`` runs, active bookings, runs per state, most first), read through
    psycopg2 (:func:`.db.connect_reader`: it loads in a fraction of psycopg 3's time)."""
    import psycopg2

    from .queries import list_bookings, list_runs

    conn = connect_reader(url, app="labrig ls")
    try:
        runs = list_runs(conn, limit=page)
        bookings = list_bookings(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT state, count(*) FROM runs GROUP BY state ORDER BY count(*) DESC")
            counts = {str(s): int(n) for s, n in cur.fetchall()}
    except psycopg2.Error as exc:
        raise reader_error(url, exc) from None
    finally:
        conn.close()
    return runs, bookings, counts


def fast_ls(argv: Sequence[str]) -> int | None:
    """Run ``labrig ls --lab ...`` if ``argv`` is one; None to use the full command line."""
    parsed = parse_ls(argv, os.environ)
    if parsed is None:
        return None
    return print_ls(*parsed, out=sys.stdout, err=sys.stderr)

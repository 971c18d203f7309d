"""``labrig ls --lab`` over a lab of 10,000 runs: the whole command's wall time.

    python bench/lab_ls.py [--runs 10000] [--repeat 9]

Makes a fresh lab database on the PostgreSQL server of the tests (``LABRIG_TEST_PG``,
default ``postgresql://postgres@127.0.0.1:5432/postgres``; dropped at the end), seeds it
with ``--runs`` runs (mixed states, one submission a second), then times whole processes,
each after one warm-up, taking turns so that a drift of the machine's speed hits every
command alike:

- ``labrig ls --lab URL`` (the newest 50 runs and the counts per state);
- ``labrig ls --lab URL --json`` (every run);
- ``python -c pass``: the floor, what any Python command costs here.

Prints for each the median (min-max) wall and CPU time of the process and its ratio to
the floor (median of the ratios of each turn). Target of the issue: ``ls --lab`` < 200 ms.
``bench/lab.py`` prints the same figures at the end of its run (``--ls-runs``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from labrig.orchestrator.lab.db import connect
from labrig.orchestrator.lab.testing import ADMIN_URL, LABRIG, TempLab, server_reachable

STATES = ("finished", "finished", "finished", "aborted", "failed", "queued")


def seed(url: str, total: int) -> int:
    """Add runs until the lab holds ``total``; returns how many it holds."""
    with connect(url) as conn, conn.cursor() as cur:
        have = int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        rows = [(f"ls-{i:06d}", f"pc-{i % 3 + 1}", f"c{i % 64}", STATES[i % len(STATES)],
                 i % 40, total - i) for i in range(have, total)]  # fmt: skip
        cur.executemany(
            "INSERT INTO runs (run_id, agent, position, protocol, protocol_yaml, state, cycle, "
            "step, submitted_at) VALUES (%s, %s, %s, 'lab bench', 'x', %s, %s, 'rest', "
            "clock_timestamp() - make_interval(secs => %s))",
            rows,
        )
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


@dataclass
class Timed:
    """Whole-process figures of one command over several runs."""

    cmd: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def once(self, keep: bool = True) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        done = subprocess.run(self.cmd, capture_output=True, timeout=120)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{self.cmd[-4:]} exited {done.returncode}: {done.stderr[-600:]!r}")
        if keep:
            self.wall.append(wall)
            self.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)

    def row(self, label: str, floor: Timed | None) -> str:
        def ms(xs: list[float]) -> str:
            return f"{1e3 * statistics.median(xs):5.0f} ({1e3 * min(xs):.0f}-{1e3 * max(xs):.0f})"

        text = f"  {label:<34} wall {ms(self.wall):<16} cpu {ms(self.cpu)}"
        if floor is not None:
            ratios = [a / b for a, b in zip(self.wall, floor.wall, strict=True)]
            text += f"  x{statistics.median(ratios):.1f} the floor (wall)"
        return text


def measure(url: str, n: int, repeat: int) -> list[str]:
    """The figure lines for a lab of ``n`` runs at ``url``."""
    ls = Timed([*LABRIG, "ls", "--lab", url])
    js = Timed([*LABRIG, "ls", "--lab", url, "--json"])
    floor = Timed([sys.executable, "-c", "pass"])
    for t in (ls, js, floor):
        t.once(keep=False)
    for _ in range(repeat):
        for t in (ls, floor, js):
            t.once()
    verdict = "met" if statistics.median(ls.wall) < 0.2 else "NOT met"
    return [
        f"LS: {n} runs; whole processes, median (min-max) ms of {repeat} turns; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        ls.row("labrig ls --lab (newest 50)", floor),
        js.row("labrig ls --lab --json (all)", floor),
        floor.row("python -c pass (the floor)", None),
        f"  target ls --lab < 200 ms: {verdict}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="runs in the lab")
    ap.add_argument("--repeat", type=int, default=9, help="timed turns of each command")
    ap.add_argument("--admin-url", default=ADMIN_URL, help="a superuser URL of the server")
    a = ap.parse_args()
    why = server_reachable(a.admin_url)
    if why is not None:
        raise SystemExit(f"no PostgreSQL: {why}")
    with TempLab(admin_url=a.admin_url) as lab:
        n = seed(lab.url, a.runs)
        print("\n".join(measure(lab.url, n, a.repeat)))


if __name__ == "__main__":
    main()

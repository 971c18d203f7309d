"""Lab mode across processes: agents, simulators and the lab database on this machine.

    python bench/lab.py [--runs 200] [--kills 10] [--db-restarts 5] [--channels 64]

Starts 3 cycler agents (a simulated 64-channel MACCOR each, in its own process, fast
real clock) and a 4th agent sharing a simulated PalmSens potentiostat, in a fresh
database ``labrig_test_<random>`` on the PostgreSQL at 127.0.0.1:5432, then prints:

- RUNS from two clients at once: all finish; submit -> start p50/p99; EIS leases never
  overlap (bookings table: grant .. end of every lease);
- KILLS: kill -9 of a cycler agent at seeded moments, restarted: runs resumed, mirrored
  events equal to each run's events.jsonl (0 lost, 0 doubled), every run on the agent
  owning its position;
- DB RESTARTS: every connection of the lab database cut (pg_terminate_backend) mid-run:
  runs unaffected, mirror complete;
- ``labrig ls --lab`` over 10,000 runs: median wall time, against a plain
  ``SELECT * FROM runs`` (reference, same process) with the ratio;
- unauthenticated and viewer clients: share of commands refused, rows changed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from labrig.orchestrator.lab import client, queries
from labrig.orchestrator.lab.db import LabUnavailable, connect
from labrig.orchestrator.lab.security import issue_agent_cert, make_ca, new_lab_secret, write_secret
from labrig.orchestrator.lab.testing import Proc, TempLab, server_reachable, spawn
from labrig.protocols.loader import load_protocol_text

PROTOCOL = """\
name: lab bench
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 120}}
sequence:
  - label: aging
    repeat: 4
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
    checkpoints:
      - every: 2
        steps:
          - {step: eis, f_start_Hz: 10000, f_end_Hz: 1, points_per_decade: 3,
             amplitude_V: 0.01, on_interrupt: repeat}
"""
FINAL = ("finished", "aborted", "failed")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


class Lab:
    def __init__(self, tmp: Path, lab: TempLab, channels: int) -> None:
        self.tmp, self.lab, self.channels = tmp, lab, channels
        self.procs: list[Proc] = []
        self.agent_args: dict[str, list[str]] = {}
        self.agents: dict[str, Proc] = {}
        certs = tmp / "certs"
        make_ca(certs, "bench")
        write_secret(certs / "lab.secret", new_lab_secret())
        for n in ("pc-1", "pc-2", "pc-3", "eis-pc"):
            issue_agent_cert(certs, n, ["127.0.0.1"])

    def start(self) -> None:
        t = self.tmp
        ps = spawn(["sim", "serve", "palmsens", "--port", "0", "--speed", "2000"], t / "ps.log")
        self.procs.append(ps)
        (t / "eis-pc.yaml").write_text(
            f"name: eis-pc\ninstruments:\n  eis: {{driver: palmsens, address: '{ps.first_line()}'}}"
            "\nlab: {heartbeat_s: 1, lease_s: 5, shared: [eis], api: {port: 0}}\n"
        )
        self._agent("eis-pc", [])
        for i in (1, 2, 3):
            m = spawn(["sim", "serve", "maccor", "--port", "0", "--speed", "4000"], t / f"m{i}.log")
            self.procs.append(m)
            pos = "\n".join(
                f"  - {{name: c{i}-{k}, cycler: cycler/{k}, impedance: 'eis-pc:eis/0'}}"
                for k in range(min(self.channels, 8))
            )
            (t / f"pc-{i}.yaml").write_text(
                f"name: pc-{i}\ninstruments:\n  cycler: {{driver: maccor, address: "
                f"'{m.first_line()}', channels: 8}}\npositions:\n{pos}\n"
                "lab: {heartbeat_s: 1, lease_s: 5}\n"
            )
            self._agent(f"pc-{i}", ["--poll", "0.5"])
        self.wait(lambda: len(self.online()) == 4, 120, "4 agents online")

    def _agent(self, name: str, extra: list[str]) -> None:
        args = ["agent", "--station", str(self.tmp / f"{name}.yaml"), "--runs",
                str(self.tmp / f"runs-{name}"), "--lab", self.lab.url, "--certs",
                str(self.tmp / "certs"), *extra]  # fmt: skip
        self.agent_args[name] = args
        self.agents[name] = spawn(args, self.tmp / f"{name}.log")

    def restart(self, name: str) -> None:
        self.agents[name] = spawn(self.agent_args[name], self.tmp / f"{name}.log")

    def online(self) -> set[str]:
        with connect(self.lab.url) as c:
            return {a["name"] for a in queries.list_agents(c) if a["online"]}

    def runs(self) -> dict[str, dict[str, object]]:
        with connect(self.lab.url) as c:
            return {r["run_id"]: r for r in queries.list_runs(c)}

    @staticmethod
    def wait(pred, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.5)
        raise SystemExit(f"timed out: {what}")

    def stop(self) -> None:
        for p in [*self.agents.values(), *self.procs]:
            p.stop(timeout_s=20)


def submit_many(lab: TempLab, n: int) -> list[str]:
    proto = load_protocol_text(PROTOCOL)
    ids: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        with connect(lab.url) as conn:
            for i in range(k, n, 2):
                rid = f"b-{i:04d}-{secrets.token_hex(2)}"
                client.submit(lab.url, proto, PROTOCOL, run_id=rid, conn=conn)
                with lock:
                    ids.append(rid)

    ts = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ids


def check_mirror(lab: Lab, ids: list[str]) -> tuple[int, int]:
    """(events missing from or different in the mirror, extra mirrored events)."""
    lost = extra = 0
    with connect(lab.lab.url) as c:
        for rid in ids:
            agent = None
            for n in ("pc-1", "pc-2", "pc-3"):
                if (lab.tmp / f"runs-{n}" / rid / "events.jsonl").exists():
                    agent = n
            if agent is None:
                continue
            text = (lab.tmp / f"runs-{agent}" / rid / "events.jsonl").read_text()
            local = {e["seq"]: (e["kind"], e["data"]) for e in map(json.loads, text.splitlines())}
            db = {e["seq"]: (e["kind"], e["data"]) for e in queries.run_events(c, rid)}
            lost += sum(1 for s, v in local.items() if db.get(s) != v)
            extra += sum(1 for s in db if s not in local)
    return lost, extra


def overlaps(lab: TempLab) -> tuple[int, int]:
    with connect(lab.url) as c:
        bs = [b for b in queries.list_bookings(c, active_only=False, limit=100000) if b["granted"]]
    held = sorted((b["granted"], b["ended"] or b["expires"]) for b in bs)
    bad = sum(1 for (_a, e0), (s1, _b) in itertools.pairwise(held) if s1 < e0)
    return len(held), bad


def bench_runs(lab: Lab, n: int, kills: int, restarts: int, rng: random.Random) -> None:
    t0 = time.monotonic()
    ids = submit_many(lab.lab, n)
    print(f"submitted {len(ids)} runs from two clients in {time.monotonic() - t0:.1f} s")
    killed = resumed_runs = 0
    cut = 0
    for _ in range(kills):
        time.sleep(rng.uniform(3.0, 8.0))
        name = rng.choice(["pc-1", "pc-2", "pc-3"])
        lab.agents[name].kill()
        killed += 1
        time.sleep(rng.uniform(0.5, 2.0))
        lab.restart(name)
    for _ in range(restarts):
        time.sleep(rng.uniform(2.0, 5.0))
        cut += lab.lab.terminate_backends()
    lab.wait(lambda: all(r["state"] in FINAL for r in lab.runs().values()), 1800, "all runs end")
    runs = lab.runs()
    states = [runs[i]["state"] for i in ids]
    lat = [float(runs[i]["started"]) - float(runs[i]["submitted"]) for i in ids
           if runs[i]["started"] is not None]  # fmt: skip
    with connect(lab.lab.url) as c:
        for i in ids:
            if any(e["kind"] == "run_resumed" for e in queries.run_events(c, i)):
                resumed_runs += 1
    wrong_agent = sum(1 for i in ids if not str(runs[i]["position"]).startswith(
        "c" + str(runs[i]["agent"])[-1]))  # fmt: skip
    lost, extra = check_mirror(lab, ids)
    held, bad = overlaps(lab.lab)
    done = states.count("finished")
    print(f"RUNS: {done}/{len(ids)} finished ({len(ids) - done} other) "
          f"in {time.monotonic() - t0:.0f} s")  # fmt: skip
    print(f"  submit -> start: p50 {pct(lat, 0.5):.2f} s, p99 {pct(lat, 0.99):.2f} s")
    print(f"  EIS leases: {held}, overlapping: {bad}")
    print(
        f"KILLS: {killed} kill -9 of a cycler agent; runs resumed: {resumed_runs}; "
        f"runs on another agent's channel: {wrong_agent}"
    )
    print(f"DB RESTARTS: {restarts} cuts of all {lab.lab.name} connections ({cut} backends)")
    print(f"  mirror: {lost} events lost or different, {extra} extra")


def bench_ls(lab: TempLab, n: int = 10_000) -> None:
    with connect(lab.url) as c, c.cursor() as cur:
        cur.executemany(
            "INSERT INTO runs (run_id, agent, position, protocol, protocol_yaml, state) "
            "VALUES (%s, 'pc-1', 'c1-0', 'p', 'x', 'finished')",
            [(f"ls-{i:06d}",) for i in range(n)],
        )
    ref, ours = [], []
    for _ in range(5):
        t = time.perf_counter()
        with connect(lab.url) as c:
            c.execute("SELECT * FROM runs").fetchall()
        ref.append(time.perf_counter() - t)
        t = time.perf_counter()
        with connect(lab.url) as c:
            rows = queries.list_runs(c)
        ours.append(time.perf_counter() - t)
    m, r = statistics.median(ours), statistics.median(ref)
    print(f"LS: list_runs over {len(rows)} runs: median {1e3 * m:.0f} ms "
          f"(reference SELECT * FROM runs {1e3 * r:.0f} ms, ratio {m / r:.2f})")  # fmt: skip


def bench_refusals(lab: TempLab) -> None:
    viewer = lab.add_user("bv", "viewer")
    proto = load_protocol_text(PROTOCOL)
    with connect(lab.url) as c:
        before = c.execute("SELECT md5(string_agg(run_id || state, ',' ORDER BY run_id)) "
                           "FROM runs").fetchone()  # fmt: skip
        some = [r["run_id"] for r in queries.list_runs(c, limit=20)]
    refused = total = 0
    for url in (viewer, lab.url_as("nobody_bench")):
        for rid in some:
            for op in ("pause", "resume", "abort"):
                total += 1
                try:
                    client.command(url, rid, op, wait_s=1)
                except (client.LabRefused, LabUnavailable):
                    refused += 1
            total += 1
            try:
                client.submit(url, proto, PROTOCOL, run_id=f"x-{secrets.token_hex(3)}")
            except (client.LabRefused, LabUnavailable):
                refused += 1
    with connect(lab.url) as c:
        after = c.execute("SELECT md5(string_agg(run_id || state, ',' ORDER BY run_id)) "
                          "FROM runs").fetchone()  # fmt: skip
    print(
        f"REFUSALS: viewer and unknown clients: {refused}/{total} commands refused "
        f"({100 * refused / max(total, 1):.0f} %), runs changed: {before != after}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--db-restarts", type=int, default=5)
    # `labrig sim serve maccor` serves 8 channels: positions per agent, at most 8 for now
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    why = server_reachable()
    if why is not None:
        sys.exit(f"no PostgreSQL: {why}")
    rng = random.Random(a.seed)
    with TemporaryDirectory() as d, TempLab() as tl:
        lab = Lab(Path(d), tl, a.channels)
        try:
            lab.start()
            bench_runs(lab, a.runs, a.kills, a.db_restarts, rng)
        finally:
            lab.stop()
        bench_refusals(tl)
        bench_ls(tl)


if __name__ == "__main__":
    main()

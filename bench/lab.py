"""Lab mode across processes: agents, simulators and a lab database of its own.

    python bench/lab.py                 # the issue's scale (about 10-15 min on 2 loaded cores)
    python bench/lab.py --quick         # a few minutes: 2x8 channels, 16 runs, fewer faults

Starts a throwaway PostgreSQL cluster (initdb + pg_ctl on a free port, as the postgres
user when run as root), 3 cycler agents (one ``labrig sim serve maccor --count 3
--channels 64`` process serves their three simulated testers, logging every command with
its sender) and a 4th agent sharing a simulated BioLogic VMP-300 (``labrig agent --sim
--sim-log``: every library call logged). The cycler stations name the VMP-300 as an
instrument of their own (``driver: remote``). Then prints:

- RUNS: N runs submitted from two client processes at once all finish; submit -> start
  p50/p99; EIS sweeps never overlap on a VMP-300 channel and each lies inside a lease
  of that channel (from the simulator's command log);
- FAULTS, at seeded moments during those runs: kill -9 of a cycler agent (restarted:
  its runs resumed; no command from another agent ever reached its tester, from the
  testers' command logs), kill -9 of the VMP-300's agent while a sweep runs (waiting runs
  go on, the sweep is repeated by its ``on_interrupt: repeat`` policy, the leases held at
  the kill end within ``lease_s``), a restart of the lab database (``pg_ctl restart``):
  runs unaffected; at the end every run's mirrored events and cycles equal its run
  directory (0 lost, 0 doubled);
- OPS: 1,000 random submit/pause/continue/abort operations from two client processes:
  runs sharing a channel never overlap in time (from their mirrored events);
- LS: ``labrig ls --lab`` (and ``--json``) wall time over 10,000 runs (median of 5), beside
  ``python -c pass`` (as ``bench/lab_ls.py`` prints them, which needs no cluster of its own);
- REFUSALS: unauthenticated and viewer clients (database and agent API): share refused,
  rows changed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pwd
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from labrig.orchestrator.lab import client, queries
from labrig.orchestrator.lab.db import LabUnavailable, connect
from labrig.orchestrator.lab.security import (
    issue_agent_cert,
    make_ca,
    mint_token,
    new_lab_secret,
    write_secret,
)
from labrig.orchestrator.lab.testing import Proc, TempLab, spawn
from labrig.protocols.loader import load_protocol_text
from labrig.simulators.command_log import read_command_log

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
          - {step: eis, f_start_Hz: 10000, f_end_Hz: 10, points_per_decade: 3,
             amplitude_V: 0.01, on_interrupt: repeat}
"""
SHORT = """\
name: lab ops
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
sequence:
  - label: one
    repeat: 2
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
"""
FINAL = ("finished", "aborted", "failed")
EIS_CHANNELS = 16
LEASE_S = 5.0
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except LabUnavailable:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out: {what}")


# ---------------------------------------------------------------------- database
class PgCluster:
    """A throwaway PostgreSQL cluster (trust auth, loopback only) on a free port."""

    def __init__(self, root: Path) -> None:
        if not PG_BIN:
            raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = PG_BIN[-1]
        self.data = root / "pgdata"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # no pipes: the server started by pg_ctl would hold them open
        subprocess.run([*self.as_user, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)  # fmt: skip

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A",
                  "trust", "--no-sync", "-E", "UTF8")  # fmt: skip
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c unix_socket_directories={self.data} -c max_connections=300")  # fmt: skip
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.data / "server.log"), "-w", "start")  # fmt: skip

    def restart(self) -> float:
        """``pg_ctl restart -m fast``: every client connection is cut; seconds it took."""
        t = time.monotonic()
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-l",
                  str(self.data / "server.log"), "-w", "restart")  # fmt: skip
        return time.monotonic() - t

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip


# ---------------------------------------------------------------------- the lab
class Lab:
    def __init__(self, tmp: Path, lab: TempLab, pg: PgCluster, a: argparse.Namespace) -> None:
        self.tmp, self.lab, self.pg, self.a = tmp, lab, pg, a
        self.procs: list[Proc] = []
        self.agent_args: dict[str, list[str]] = {}
        self.agents: dict[str, Proc] = {}
        self.pids: dict[str, list[int]] = defaultdict(list)
        self.certs = tmp / "certs"
        make_ca(self.certs, "bench")
        self.secret = new_lab_secret()
        write_secret(self.certs / "lab.secret", self.secret)
        for n in ("pc-1", "pc-2", "pc-3", "eis-pc", "web"):
            issue_agent_cert(self.certs, n, ["127.0.0.1"])
        self.api_port = free_port()

    def start(self) -> None:
        t, ch = self.tmp, self.a.channels
        sims = spawn(["sim", "serve", "maccor", "--port", "0", "--count", "3", "--channels",
                      str(ch), "--speed", str(self.a.speed), "--command-log",
                      str(t / "logs" / "maccor.jsonl")], t / "maccor.log")  # fmt: skip
        self.procs.append(sims)
        addresses = sims.first_lines(3)
        (t / "eis-pc.yaml").write_text(
            f"name: eis-pc\ninstruments:\n  vmp: {{driver: biologic, address: 'biologic://USB0',"
            f" channels: {EIS_CHANNELS}, options: {{model: VMP-300, eis_poll_s: 0.2}}}}\n"
            f"lab: {{heartbeat_s: 1, lease_s: {LEASE_S}, shared: [vmp], api: {{port: "
            f"{self.api_port}}}}}\n"
        )
        self._agent("eis-pc", ["--sim", "--sim-log", str(t / "logs")])
        for i, address in enumerate(addresses, start=1):
            pos = "\n".join(
                f"  - {{name: c{i}-{k}, cycler: cycler/{k}, impedance: eis/{k % EIS_CHANNELS}}}"
                for k in range(ch)
            )
            (t / f"pc-{i}.yaml").write_text(
                f"name: pc-{i}\ninstruments:\n"
                f"  cycler: {{driver: maccor, address: '{address}', channels: {ch}}}\n"
                f"  eis: {{driver: remote, address: 'lab://eis-pc/vmp', channels: "
                f"{EIS_CHANNELS}}}\npositions:\n{pos}\n"
                f"lab: {{heartbeat_s: 1, lease_s: {LEASE_S}}}\n"
            )
            self._agent(f"pc-{i}", ["--poll", str(self.a.poll)])
        wait(lambda: len(self.online()) == 4, 180, "4 agents online")

    def _agent(self, name: str, extra: list[str]) -> None:
        args = ["agent", "--station", str(self.tmp / f"{name}.yaml"), "--runs",
                str(self.tmp / f"runs-{name}"), "--lab", self.lab.url, "--certs",
                str(self.certs), *extra]  # fmt: skip
        self.agent_args[name] = args
        self.restart(name)

    def restart(self, name: str) -> None:
        self.agents[name] = spawn(self.agent_args[name], self.tmp / f"{name}.log")
        self.pids[name].append(self.agents[name].pid)

    def kill(self, name: str) -> None:
        self.agents[name].kill()

    def online(self) -> set[str]:
        with connect(self.lab.url) as c:
            return {a["name"] for a in queries.list_agents(c) if a["online"]}

    def runs(self) -> dict[str, dict[str, Any]]:
        with connect(self.lab.url) as c:
            return {r["run_id"]: r for r in queries.list_runs(c)}

    def stop(self) -> None:
        for p in [*self.agents.values(), *self.procs]:
            p.stop(timeout_s=30)


# ---------------------------------------------------------------------- clients
def run_clients(url: str, mode: str, n: int, seed: int, positions: list[str]) -> list[dict]:
    """Two client processes (two PCs) started together; their JSON reports."""
    start_at = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                mode,
                "--url",
                url,
                "--n",
                str(n),
                "--index",
                str(k),
                "--seed",
                str(seed),
                "--start-at",
                str(start_at),
                "--positions",
                ",".join(positions),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in (0, 1)
    ]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=3600)
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def client_main(a: argparse.Namespace) -> None:
    """One client process: ``submit`` every other of N runs, or ``ops``: N/2 random ops."""
    rng = random.Random(a.seed * 10 + a.index)
    time.sleep(max(0.0, a.start_at - time.time()))
    report: dict[str, Any] = {"ok": 0, "refused": 0, "ids": [], "ops": defaultdict(int)}
    with connect(a.url) as conn:
        if a.client == "submit":
            proto = load_protocol_text(PROTOCOL)
            for i in range(a.index, a.n, 2):
                rid = f"b-{i:04d}-{secrets.token_hex(2)}"
                client.submit(a.url, proto, PROTOCOL, run_id=rid, conn=conn)
                report["ids"].append(rid)
                report["ok"] += 1
        else:
            _ops(a, rng, conn, report)
    print(json.dumps(report))


def _ops(a: argparse.Namespace, rng: random.Random, conn: Any, report: dict[str, Any]) -> None:
    proto = load_protocol_text(SHORT)
    positions = a.positions.split(",")
    mine: list[str] = []
    for k in range(a.n // 2):
        op = rng.choices(["submit", "pause", "resume", "abort"], [3, 3, 3, 1])[0]
        report["ops"][op] += 1
        try:
            if op == "submit" or not mine:
                rid = f"op{a.index}-{k:04d}-{secrets.token_hex(2)}"
                client.submit(a.url, proto, SHORT, run_id=rid, position=rng.choice(positions),
                              conn=conn)  # fmt: skip
                mine.append(rid)
                report["ids"].append(rid)
                report["ok"] += 1
                continue
            others = [r["run_id"] for r in queries.list_runs(conn, limit=300)
                      if str(r["run_id"]).startswith("op") and r["state"] not in FINAL]  # fmt: skip
            target = rng.choice(others or mine)
            state, _ = client.command(a.url, target, op, wait_s=3, conn=conn)
            report["ok" if state == "accepted" else "refused"] += 1
        except (client.LabRefused, LabUnavailable):
            report["refused"] += 1


# ---------------------------------------------------------------------- checks
def mirror_diff(lab: Lab, ids: list[str]) -> tuple[int, int, int, int]:
    """(events lost or different, extra events, cycle rows lost or different, extra)."""
    lost = extra = clost = cextra = 0
    with connect(lab.lab.url) as c:
        for rid in ids:
            run_dir = next((p for n in ("pc-1", "pc-2", "pc-3")
                            if (p := lab.tmp / f"runs-{n}" / rid).is_dir()), None)  # fmt: skip
            if run_dir is None or not (run_dir / "events.jsonl").exists():
                continue
            text = (run_dir / "events.jsonl").read_text()
            local = {e["seq"]: (e["kind"], e["data"]) for e in map(json.loads, text.splitlines())}
            db = {e["seq"]: (e["kind"], e["data"]) for e in queries.run_events(c, rid)}
            lost += sum(1 for s, v in local.items() if db.get(s) != v)
            extra += sum(1 for s in db if s not in local)
            csv = run_dir / "cycles.csv"
            rows = len(csv.read_text().splitlines()) - 1 if csv.exists() else 0
            got = len(queries.run_cycles(c, rid))
            clost += max(0, rows - got)
            cextra += max(0, got - rows)
    return lost, extra, clost, cextra


def eis_log_check(lab: Lab) -> tuple[int, int, int, int]:
    """From the VMP-300's command log: (sweeps, overlapping, refused as busy, outside a
    lease of their channel)."""
    log = read_command_log(lab.tmp / "logs" / "vmp.jsonl")
    with connect(lab.lab.url) as c:
        bs = queries.list_bookings(c, active_only=False, limit=1_000_000)
    leases: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for b in bs:
        if b["granted"] is not None:
            ch = int(str(b["resource"]).rsplit("/", 1)[1])
            leases[ch].append((b["granted"], b["ended"] or b["expires"]))
    open_: dict[int, tuple[float, int]] = {}
    sweeps = overlap = busy = outside = 0
    for e in log:
        ch, cmd = e["chan"], e["cmd"]
        for k, (_t0, pid) in list(open_.items()):
            if pid != e["pid"]:
                del open_[k]  # the agent (and the library in it) was restarted
        if ch is None:
            continue
        if cmd == "BL_StartChannel":
            if e["rc"] == -13:
                busy += 1
            elif e["rc"] == 0:
                sweeps += 1
                overlap += ch in open_
                open_[ch] = (e["t"], e["pid"])
                if not any(g - 0.05 <= e["t"] <= end + 0.05 for g, end in leases[ch]):
                    outside += 1
        elif cmd in ("BL_StopChannel", "BL_LoadTechnique") and ch in open_:
            del open_[ch]
    return sweeps, overlap, busy, outside


def foreign_commands(lab: Lab) -> tuple[int, int, int]:
    """(commands on the testers, commands from a process other than the owning agent's,
    commands whose sender could not be told)."""
    total = foreign = unknown = 0
    for i in (1, 2, 3):
        own = set(lab.pids[f"pc-{i}"])
        for e in read_command_log(lab.tmp / "logs" / f"maccor-{i - 1}.jsonl"):
            total += 1
            unknown += e["pid"] is None
            foreign += e["pid"] is not None and e["pid"] not in own
    return total, foreign, unknown


def overlapping_runs(url: str, prefix: str) -> tuple[int, int]:
    """(channels used, channels where two runs' events overlap in time)."""
    with connect(url) as c:
        rows = c.execute(
            "SELECT r.agent, r.position, r.run_id, min(e.wall_time), max(e.wall_time) "
            "FROM runs r JOIN events e ON e.run_id = r.run_id WHERE r.run_id LIKE %s "
            "GROUP BY r.agent, r.position, r.run_id", (prefix + "%",)
        ).fetchall()  # fmt: skip
    by_channel: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for agent, pos, _rid, t0, t1 in rows:
        by_channel[(agent, pos)].append((float(t0), float(t1)))
    bad = 0
    for spans in by_channel.values():
        spans.sort()
        bad += any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    return len(by_channel), bad


# ---------------------------------------------------------------------- phases
def _active_on(lab: Lab, agent: str) -> list[str]:
    return [r for r, v in lab.runs().items()
            if v["agent"] == agent and v["state"] in ("running", "paused")]  # fmt: skip


def _holding(lab: Lab) -> list[dict[str, Any]]:
    with connect(lab.lab.url) as c:
        return [b for b in queries.list_bookings(c) if b["state"] == "holding"]


class Faults:
    """The seeded fault timeline run while the runs go on, and what each fault touched."""

    def __init__(self, lab: Lab, rng: random.Random) -> None:
        self.lab, self.rng = lab, rng
        self.kills: list[tuple[float, str, list[str]]] = []  # (time, agent, its active runs)
        self.eis: list[tuple[float, list[int]]] = []  # (time, bookings holding then)
        self.restarts: list[float] = []  # seconds each database restart took

    def run(self, plan: list[str], all_done: Callable[[], bool]) -> None:
        for what in plan:
            time.sleep(self.rng.uniform(3.0, 7.0))
            if all_done():
                print(f"  (runs ended before fault '{what}'; not applied)")
                continue
            getattr(self, what)()

    def kill(self) -> None:
        name = self.rng.choice(["pc-1", "pc-2", "pc-3"])
        active = _active_on(self.lab, name)
        t = time.time()
        self.lab.kill(name)
        self.kills.append((t, name, active))
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.lab.restart(name)

    def eis_loss(self) -> None:
        deadline = time.monotonic() + 30
        held = _holding(self.lab)
        while not held and time.monotonic() < deadline:
            time.sleep(0.1)
            held = _holding(self.lab)
        t = time.time()
        self.lab.kill("eis-pc")
        self.eis.append((t, [int(b["id"]) for b in held]))
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.lab.restart("eis-pc")

    def db_restart(self) -> None:
        self.restarts.append(self.lab.pg.restart())

    def report(self, url: str) -> None:
        resumed_kills = resumed_runs = affected = 0
        with connect(url) as c:
            for t, _name, active in self.kills:
                ok = hit = 0
                for rid in active:
                    evs = queries.run_events(c, rid)
                    if any(e["kind"] == "run_ended" and e["wall_time"] <= t for e in evs):
                        continue  # it had ended; the database had not heard yet
                    hit += 1
                    ok += any(e["kind"] == "run_resumed" and e["wall_time"] > t for e in evs)
                affected += hit
                resumed_runs += ok
                resumed_kills += ok == hit
            bookings = {b["id"]: b for b in queries.list_bookings(c, active_only=False,
                                                                  limit=1_000_000)}  # fmt: skip
            policy = c.execute(
                "SELECT count(*), count(DISTINCT run_id) FROM events WHERE kind = 'notify' "
                "AND data->>'policy' = 'repeat'"
            ).fetchone()
        lag = []
        states: dict[str, int] = defaultdict(int)
        for t, ids in self.eis:
            for bid in ids:
                b = bookings[bid]
                states[str(b["state"])] += 1
                lag.append((b["ended"] or b["expires"]) - t)
        total, foreign, unknown = foreign_commands(self.lab)
        print(f"KILLS: {len(self.kills)} kill -9 of a cycler agent; {resumed_kills}/"
              f"{len(self.kills)} resumed every run it had ({resumed_runs}/{affected} runs); "
              f"tester commands from another agent's process: {foreign} of {total} "
              f"({unknown} whose sender had gone before it was looked up)")  # fmt: skip
        print(
            f"EIS-AGENT LOSSES: {len(self.eis)} kill -9 of eis-pc mid-sweep; leases held "
            f"then: {len(lag)} ({dict(states)}), ended {max(lag, default=0):.1f} s after the "
            f"kill at most (lease_s {LEASE_S:g}); EIS attempts interrupted and repeated by "
            f"policy: {policy[0]} in {policy[1]} runs"
        )
        print(
            f"DB RESTARTS: {len(self.restarts)} pg_ctl restart -m fast of the lab database "
            f"({statistics.mean(self.restarts or [0]):.1f} s each)"
        )


def bench_runs(lab: Lab, a: argparse.Namespace, rng: random.Random) -> list[str]:
    t0 = time.monotonic()
    positions = [f"pc-{i}/c{i}-{k}" for i in (1, 2, 3) for k in range(a.channels)]
    plan = ["kill"] * a.kills + ["eis_loss"] * a.eis_losses + ["db_restart"] * a.db_restarts
    rng.shuffle(plan)
    faults = Faults(lab, rng)
    reports = run_clients(lab.lab.url, "submit", a.runs, a.seed, positions)
    ids = [i for r in reports for i in r["ids"]]
    print(f"submitted {len(ids)} runs from two client processes in "
          f"{time.monotonic() - t0:.1f} s")  # fmt: skip

    def all_done() -> bool:
        try:
            runs = lab.runs()
        except LabUnavailable:
            return False
        return all(runs[i]["state"] in FINAL for i in ids if i in runs)

    faults.run(plan, all_done)
    wait(lambda: all_done() and len(lab.runs()) >= len(ids), 3600, "all runs end")
    time.sleep(3)  # the last mirror drains
    runs = lab.runs()
    states = [runs[i]["state"] for i in ids]
    lat = [float(runs[i]["started"]) - float(runs[i]["submitted"]) for i in ids
           if runs[i]["started"] is not None]  # fmt: skip
    idle = [float(r["started"]) - float(r["submitted"]) for i in ids
            if (r := runs[i])["started"] is not None and not _waited(r, runs)]  # fmt: skip
    done = states.count("finished")
    print(f"RUNS: {done}/{len(ids)} finished ({len(ids) - done} other: "
          f"{sorted(set(states) - {'finished'})}) in {time.monotonic() - t0:.0f} s")  # fmt: skip
    print(f"  submit -> start: p50 {pct(lat, 0.5):.2f} s, p99 {pct(lat, 0.99):.2f} s "
          f"({len(ids)} runs on {len(positions)} positions); the {len(idle)} that found their "
          f"position free: p50 {pct(idle, 0.5):.2f} s, p99 {pct(idle, 0.99):.2f} s")  # fmt: skip
    sweeps, overlap, busy, outside = eis_log_check(lab)
    print(
        f"  EIS on the shared VMP-300 (its command log): {sweeps} sweeps, overlapping on a "
        f"channel: {overlap}, refused as busy: {busy}, outside a lease: {outside}"
    )
    faults.report(lab.lab.url)
    lost, extra, clost, cextra = mirror_diff(lab, ids)
    print(
        f"MIRROR: events lost or different {lost}, doubled {extra}; cycle rows lost "
        f"{clost}, doubled {cextra}"
    )
    return ids


def _waited(r: dict[str, Any], runs: dict[str, dict[str, Any]]) -> bool:
    """Whether an earlier run held (or was queued for) ``r``'s position when ``r`` came."""
    return any(
        o is not r and o["agent"] == r["agent"] and o["position"] == r["position"]
        and o["submitted"] < r["submitted"]
        and (o["ended"] is None or o["ended"] > r["submitted"])
        for o in runs.values()
    )  # fmt: skip


def bench_ops(lab: Lab, a: argparse.Namespace) -> None:
    t0 = time.monotonic()
    positions = [f"pc-{i}/c{i}-{k}" for i in (1, 2, 3) for k in range(min(a.channels, 8))]
    reports = run_clients(lab.lab.url, "ops", a.ops, a.seed, positions)
    ids = [i for r in reports for i in r["ids"]]
    ops: dict[str, int] = defaultdict(int)
    for r in reports:
        for k, v in r["ops"].items():
            ops[k] += v
    took = time.monotonic() - t0

    def left() -> list[str]:
        return [i for i, r in lab.runs().items() if i in ids and r["state"] not in FINAL]

    deadline = time.monotonic() + 1200
    while (rest := left()) and time.monotonic() < deadline:  # end what is left, then check
        for rid in rest:  # an abort not taken in time expires: ask again
            with contextlib.suppress(client.LabRefused, LabUnavailable):
                client.command(lab.lab.url, rid, "abort", wait_s=15)
        time.sleep(1)
    used, bad = overlapping_runs(lab.lab.url, "op")
    ok = sum(r["ok"] for r in reports)
    print(
        f"OPS: {sum(ops.values())} random operations from two clients in {took:.0f} s "
        f"({dict(ops)}; {ok} accepted, {sum(r['refused'] for r in reports)} refused); "
        f"{len(ids)} runs on {used} channels; channels commanded by two runs at once: {bad}"
    )


def bench_ls(url: str, total: int) -> None:
    from lab_ls import measure, seed  # bench/lab_ls.py (this script's folder is on sys.path)

    print("\n".join(measure(url, seed(url, total), repeat=5)))


def bench_refusals(lab: Lab) -> None:
    import httpx

    tl = lab.lab
    viewer = tl.add_user("bv", "viewer")
    proto = load_protocol_text(SHORT)
    digest = "SELECT md5(string_agg(run_id || state, ',' ORDER BY run_id)) FROM runs"
    with connect(tl.url) as c:
        before = c.execute(digest).fetchone()
        some = [r["run_id"] for r in queries.list_runs(c, limit=20)]
    refused = total = 0
    for url in (viewer, tl.url_as("nobody_bench")):
        for rid in some:
            for op in ("pause", "resume", "abort"):
                total += 1
                try:
                    client.command(url, rid, op, wait_s=1)
                except (client.LabRefused, LabUnavailable):
                    refused += 1
            total += 1
            try:
                client.submit(url, proto, SHORT, run_id=f"x-{secrets.token_hex(3)}")
            except (client.LabRefused, LabUnavailable):
                refused += 1
    api_refused, api_total = _api_refusals(lab, httpx)
    with connect(tl.url) as c:
        after = c.execute(digest).fetchone()
    print(
        f"REFUSALS: viewer and unknown database clients: {refused}/{total} refused; agent "
        f"API without token / forged / viewer / no client certificate: {api_refused}/"
        f"{api_total} refused; runs changed: {before != after}"
    )


def _api_refusals(lab: Lab, httpx: Any) -> tuple[int, int]:
    import ssl

    base = f"https://127.0.0.1:{lab.api_port}"
    body = {"token": 10**9, "run_id": "x", "args": {}}
    ctx = ssl.create_default_context(cafile=str(lab.certs / "ca.crt"))
    ctx.load_cert_chain(str(lab.certs / "web.crt"), str(lab.certs / "web.key"))
    heads = [{}, {"Authorization": f"Bearer {mint_token('forged', 'pc-1', 'agent')}"},
             {"Authorization": f"Bearer {mint_token(lab.secret, 'web', 'viewer')}"}]  # fmt: skip
    refused = total = 0
    with httpx.Client(verify=ctx, timeout=10) as c:
        for h in heads:
            for ch in range(4):
                total += 1
                r = c.post(f"{base}/v1/instruments/vmp/{ch}/measure_ocv", json=body, headers=h)
                refused += r.status_code in (401, 403)
    bare = ssl.create_default_context(cafile=str(lab.certs / "ca.crt"))
    agent = {"Authorization": f"Bearer {mint_token(lab.secret, 'pc-1', 'agent')}"}
    with httpx.Client(verify=bare, timeout=10) as c:
        for ch in range(4):
            total += 1
            try:
                c.post(f"{base}/v1/instruments/vmp/{ch}/safe_state", json=body, headers=agent)
            except httpx.HTTPError:
                refused += 1
    return refused, total


# ---------------------------------------------------------------------- main
def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--channels", type=int, default=64, help="positions per cycler agent")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--eis-losses", type=int, default=5)
    ap.add_argument("--db-restarts", type=int, default=5)
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--ls-runs", type=int, default=10_000)
    ap.add_argument("--speed", type=float, default=500.0, help="simulated s per real s")
    ap.add_argument("--poll", type=float, default=2.0, help="agents' poll period, s")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2x8 channels, 16 runs, 2+1+1 faults")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    # one client process (internal)
    ap.add_argument("--client", choices=["submit", "ops"], help=argparse.SUPPRESS)
    for k in ("--url", "--positions"):
        ap.add_argument(k, help=argparse.SUPPRESS)
    for k in ("--n", "--index"):
        ap.add_argument(k, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.runs, a.channels, a.kills, a.eis_losses, a.db_restarts = 16, 8, 2, 1, 1
        a.ops, a.poll = 100, 1.0
    return a


def main() -> None:
    a = parse()
    if a.client:
        client_main(a)
        return
    rng = random.Random(a.seed)
    tmp = Path(mkdtemp(prefix="labrig-bench-"))
    pg = PgCluster(tmp)
    t0 = time.monotonic()
    print(f"lab bench: {a.runs} runs on 3 agents x {a.channels} MACCOR channels + eis-pc "
          f"(simulated VMP-300, {EIS_CHANNELS} channels); machine: {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    pg.start()
    try:
        with TempLab(admin_url=pg.admin_url) as tl:
            lab = Lab(tmp, tl, pg, a)
            try:
                lab.start()
                bench_runs(lab, a, rng)
                bench_ops(lab, a)
                bench_refusals(lab)
            finally:
                lab.stop()
            bench_ls(tl.url, a.ls_runs)
    finally:
        pg.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    print(f"total {time.monotonic() - t0:.0f} s; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

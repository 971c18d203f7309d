"""Agents as separate processes: a cycler PC and an EIS PC, simulated instruments in their
own processes on a fast real clock, the lab database and a private Mosquitto.

One scenario: two EIS runs on the cycler PC measure on the EIS PC's potentiostat; the
cycler agent is killed with SIGKILL mid-run (its MQTT last will says offline, the lab
says agent offline) and started again: both runs resume and finish, every event is
mirrored exactly once, the shared instrument was never booked twice at once, and the
EIS PC's API refuses unauthenticated and viewer callers.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labrig.orchestrator.lab import client, queries
from labrig.orchestrator.lab.db import connect
from labrig.orchestrator.lab.security import (
    issue_agent_cert,
    make_ca,
    mint_token,
    new_lab_secret,
    write_secret,
)
from labrig.orchestrator.lab.testing import LABRIG, Proc, TempLab, spawn
from labrig.orchestrator.mqtt.testing import LocalMosquitto, mosquitto_binary
from labrig.protocols.loader import load_protocol_text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROTOCOL = """\
name: lab e2e
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 60}}
sequence:
  - label: aging
    repeat: 8
    steps: [Charge at 1C until 3.68 V, Discharge at 1C until 2.28 V]
    checkpoints:
      - every: 4
        steps:
          - {step: eis, f_start_Hz: 10000, f_end_Hz: 1, points_per_decade: 4,
             amplitude_V: 0.01, on_interrupt: repeat}
"""
ACL = "user pc-a\ntopic readwrite labrig/pc-a/#\nuser viewer\ntopic read labrig/#\n"


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop(timeout_s=15)


def _wait(pred, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _runs(lab: TempLab) -> dict[str, dict[str, object]]:
    with connect(lab.url) as conn:
        return {r["run_id"]: r for r in queries.list_runs(conn)}


def _online(lab: TempLab) -> set[str]:
    with connect(lab.url) as conn:
        return {a["name"] for a in queries.list_agents(conn) if a["online"]}


def _retained_state(broker: LocalMosquitto) -> str:
    out = subprocess.run(
        [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", "127.0.0.1", "-p",
         str(broker.port), "-u", "viewer", "-P", broker.passwords["viewer"], "-t",
         "labrig/pc-a/orchestrator/state", "-C", "1", "-W", "3"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    return out.stdout.strip()


def test_two_pcs_kill_and_resume(lab: TempLab, tmp_path: Path, procs: list[Proc]) -> None:
    if mosquitto_binary() is None or shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto (and mosquitto_sub) not installed")
    certs = tmp_path / "certs"
    make_ca(certs, "test")
    secret = new_lab_secret()
    write_secret(certs / "lab.secret", secret)
    for name in ("pc-a", "eis-pc"):
        issue_agent_cert(certs, name, ["127.0.0.1", "localhost"])
    broker = LocalMosquitto(tmp_path / "mqtt", users=("pc-a", "viewer"), acl=ACL)
    broker.start()
    try:
        _scenario(lab, tmp_path, certs, secret, broker, procs)
    finally:
        broker.stop(kill=True)


def _scenario(
    lab: TempLab, tmp: Path, certs: Path, secret: str, broker: LocalMosquitto, procs: list[Proc]
) -> None:
    maccor = spawn(["sim", "serve", "maccor", "--port", "0", "--speed", "6000"], tmp / "m.log")
    procs.append(maccor)
    palmsens = spawn(["sim", "serve", "palmsens", "--port", "0", "--speed", "300"], tmp / "p.log")
    procs.append(palmsens)
    (tmp / "eis-pc.yaml").write_text(
        "name: eis-pc\ninstruments:\n"
        f"  eis: {{driver: palmsens, address: '{palmsens.first_line()}'}}\n"
        "lab: {heartbeat_s: 0.5, lease_s: 3, shared: [eis], api: {port: 0}}\n"
    )
    (tmp / "pc-a.yaml").write_text(
        "name: pc-a\ninstruments:\n"
        f"  cycler: {{driver: maccor, address: '{maccor.first_line()}', channels: 8}}\n"
        "positions:\n"
        "  - {name: a0, cycler: cycler/0, impedance: 'eis-pc:eis/0'}\n"
        "  - {name: a1, cycler: cycler/1, impedance: 'eis-pc:eis/0'}\n"
        "lab: {heartbeat_s: 0.5, lease_s: 3}\n"
    )
    common = ["--lab", lab.url, "--certs", str(tmp / "certs")]
    procs.append(spawn(["agent", "--station", str(tmp / "eis-pc.yaml"), "--runs",
                        str(tmp / "runs-eis"), *common], tmp / "eis-agent.log"))  # fmt: skip
    a_args = ["agent", "--station", str(tmp / "pc-a.yaml"), "--runs", str(tmp / "runs-a"),
              "--poll", "0.2", "--mqtt", broker.url("pc-a"), *common]  # fmt: skip
    agent_a = spawn(a_args, tmp / "a1.log")
    procs.append(agent_a)
    _wait(lambda: _online(lab) >= {"pc-a", "eis-pc"}, 90, "both agents online")
    proto = load_protocol_text(PROTOCOL)
    runs = []
    for pos in ("a0", "a1"):
        run_id = f"e2e-{pos}-{secrets.token_hex(3)}"
        client.submit(lab.url, proto, PROTOCOL, run_id=run_id, position=f"pc-a/{pos}")
        runs.append(run_id)
    _wait(lambda: all(_runs(lab)[r]["state"] == "running" and (_runs(lab)[r]["cycle"] or 0) >= 2
                      for r in runs), 120, "both runs running")  # fmt: skip
    agent_a.kill()
    _wait(lambda: _retained_state(broker) == "offline", 20, "the MQTT last will")
    _wait(lambda: not _runs(lab)[runs[0]]["agent_online"], 20, "the lab to see pc-a offline")
    procs.append(spawn(a_args, tmp / "a2.log"))
    _check_api(lab, certs_dir=tmp / "certs", secret=secret)
    _wait(lambda: all(_runs(lab)[r]["state"] in ("finished", "failed", "aborted") for r in runs),
          180, "both runs to end")  # fmt: skip
    with connect(lab.url) as conn:
        for r in runs:
            assert _runs(lab)[r]["state"] == "finished", _runs(lab)[r]
            local = [
                json.loads(x)
                for x in (tmp / "runs-a" / r / "events.jsonl").read_text().splitlines()
            ]
            mirrored = queries.run_events(conn, r)
            assert [(e["seq"], e["kind"], e["data"]) for e in mirrored] == [
                (e["seq"], e["kind"], e["data"]) for e in local
            ]
            assert [e["seq"] for e in local] == list(range(1, len(local) + 1))
            assert len(queries.run_cycles(conn, r)) == 8
            assert len(list((tmp / "runs-a" / r / "eis").glob("*.parquet"))) >= 2
        resumed = sum(
            any(e["kind"] == "run_resumed" for e in queries.run_events(conn, r)) for r in runs
        )
        assert resumed >= 1
        bookings = queries.list_bookings(conn, active_only=False)
    held = [(b["granted"], b["ended"] or b["expires"]) for b in bookings if b["granted"]]
    held.sort()
    assert len(held) >= 4  # 2 sweeps a run
    for (_s0, e0), (s1, _e1) in itertools.pairwise(held):
        assert s1 >= e0, "two leases of the EIS PC's potentiostat overlapped"


def _check_api(lab: TempLab, *, certs_dir: Path, secret: str) -> None:
    with connect(lab.url) as conn:
        (url,) = [a["api_url"] for a in queries.list_agents(conn) if a["name"] == "eis-pc"]
    ca = str(certs_dir / "ca.crt")
    cert = (str(certs_dir / "pc-a.crt"), str(certs_dir / "pc-a.key"))
    body = {"token": 10**9, "run_id": "x", "args": {}}
    path = f"{url}/v1/instruments/eis/0/safe_state"
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(*cert)
    with httpx.Client(verify=ctx, timeout=10) as c:
        assert c.post(path, json=body).status_code == 401  # no token
        viewer = {"Authorization": f"Bearer {mint_token(secret, 'web', 'viewer')}"}
        assert c.get(f"{url}/v1/instruments", headers=viewer).status_code == 200
        assert c.post(path, json=body, headers=viewer).status_code == 403
        forged = {"Authorization": f"Bearer {mint_token('not-the-secret', 'pc-a', 'agent')}"}
        assert c.post(path, json=body, headers=forged).status_code == 401
        agent = {"Authorization": f"Bearer {mint_token(secret, 'pc-a', 'agent')}"}
        assert c.post(path, json=body, headers=agent).status_code == 409  # no such lease
    no_cert = ssl.create_default_context(cafile=ca)
    with httpx.Client(verify=no_cert, timeout=10) as c, pytest.raises(httpx.HTTPError):
        c.get(f"{url}/v1/health")  # no client certificate: no TLS session
    assert os.stat(certs_dir / "lab.secret").st_mode & 0o077 == 0
    assert LABRIG  # the agents ran as `labrig agent`

"""The lab database: migrations, the queue (claims with SKIP LOCKED), commands and roles."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import psycopg
import pytest

from labrig.orchestrator.lab import client, queries, registry
from labrig.orchestrator.lab.config import agent_config_from_dict
from labrig.orchestrator.lab.db import LabUnavailable, aconnect, connect
from labrig.orchestrator.lab.schema import SCHEMA_VERSION, migrate
from labrig.orchestrator.lab.testing import TempLab
from labrig.protocols.loader import load_protocol_text

PROTOCOL = """\
name: queue test
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
sequence:
  - steps: [Charge at 1C until 3.68 V]
"""


def _agent(name: str, positions: int = 2) -> dict[str, object]:
    return {
        "name": name,
        "instruments": {
            "cycler": {"driver": "maccor", "address": "tcp://127.0.0.1:1", "channels": 8}
        },
        "positions": [{"name": f"p{i}", "cycler": f"cycler/{i}"} for i in range(positions)],
    }


async def _register(lab: TempLab, name: str, positions: int = 2) -> None:
    cfg = agent_config_from_dict(_agent(name, positions), Path("x.yaml"))
    conn = await aconnect(lab.url)
    try:
        await registry.register(conn, cfg, api_url=None, version="t")
    finally:
        await conn.close()


def _submit(lab: TempLab, position: str | None, url: str | None = None) -> str:
    proto = load_protocol_text(PROTOCOL)
    run_id = f"r-{secrets.token_hex(6)}"
    client.submit(url or lab.url, proto, PROTOCOL, run_id=run_id, position=position)
    return run_id


def test_migrate_is_idempotent_and_versioned(lab: TempLab) -> None:
    with connect(lab.url) as conn:
        assert migrate(conn) == []
        (v,) = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        assert v == SCHEMA_VERSION
        roles = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    assert set(lab.roles.values()) <= roles


async def test_claims_take_each_run_once_and_in_order(lab: TempLab) -> None:
    agent = f"a-{secrets.token_hex(3)}"
    await _register(lab, agent)
    runs = [_submit(lab, f"{agent}/p0") for _ in range(3)] + [_submit(lab, f"{agent}/p1")]
    conns = [await aconnect(lab.url) for _ in range(2)]
    try:
        # two claimers at once (an agent started twice by mistake): SKIP LOCKED
        got = await asyncio.gather(*(registry.claim_runs(c, agent, ["p0", "p1"]) for c in conns))
        first = [c.run_id for g in got for c in g]
        assert len(first) == len(set(first))  # each run once
        # the head of each queue; when one claimer committed before the other looked, the
        # other rightly took p0's next run
        assert {runs[0], runs[3]} <= set(first) <= {runs[0], runs[1], runs[3]}
        more = await registry.claim_runs(conns[0], agent, ["p0"])
        nxt = runs[2] if runs[1] in first else runs[1]
        assert [c.run_id for c in more] == [nxt]  # FIFO
    finally:
        for c in conns:
            await c.close()
    with connect(lab.url) as conn:
        states = {r["run_id"]: r["state"] for r in queries.list_runs(conn, agent=agent)}
    queued = {runs[1], runs[2]} - {*first, nxt}
    assert states == {r: "queued" if r in queued else "claimed" for r in runs}


async def test_roles_viewer_refused_operator_obeyed(lab: TempLab) -> None:
    agent = f"a-{secrets.token_hex(3)}"
    await _register(lab, agent, positions=1)
    viewer = lab.add_user(f"v{secrets.token_hex(2)}", "viewer")
    operator = lab.add_user(f"o{secrets.token_hex(2)}", "operator")
    run = _submit(lab, f"{agent}/p0", url=operator)

    def runs_now() -> list[dict[str, object]]:
        with connect(lab.url) as conn:
            rows = queries.list_runs(conn, agent=agent)
        return [{k: v for k, v in r.items() if k != "heartbeat_age_s"} for r in rows]

    before = runs_now()
    with pytest.raises(client.LabRefused, match="permission denied"):
        _submit(lab, f"{agent}/p0", url=viewer)
    for op in ("pause", "resume", "abort"):
        with pytest.raises(client.LabRefused, match="permission denied"):
            client.command(viewer, run, op)
    with pytest.raises(LabUnavailable, match="does not exist"):
        connect(lab.url_as("nobody_at_all"))
    with connect(viewer) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE runs SET state = 'finished'")
    assert runs_now() == before  # nothing changed
    # an operator: a queued run cannot be paused, but can be taken off the queue
    assert client.command(operator, run, "pause")[0] == "refused"
    assert client.command(operator, run, "abort") == ("accepted", "removed from the queue")
    with connect(lab.url) as conn:
        (r,) = queries.list_runs(conn, agent=agent)
    assert r["state"] == "aborted" and r["submitted_by"].endswith(operator.split("@")[0][-5:])


def test_submit_errors_are_clear(lab: TempLab) -> None:
    with pytest.raises(client.LabRefused, match="no position fits"):
        _submit(lab, "no-such-agent/p9")
    with pytest.raises(client.LabRefused, match="no run"):
        client.command(lab.url, "r-none", "abort")

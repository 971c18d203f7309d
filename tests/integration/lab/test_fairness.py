"""Runs submitted from two clients at once: spread over the idle positions (no position
gets a second run while another fitting one has none) and claimed first come, first
served, whichever client sent them."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import Counter

from labrig.orchestrator.lab import client, registry
from labrig.orchestrator.lab.db import AsyncLink, connect
from labrig.orchestrator.lab.testing import TempLab
from labrig.protocols.loader import load_protocol_text

PROTOCOL = """\
name: fair
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
sequence:
  - Charge at 1C until 3.68 V
"""


def _agent(lab: TempLab, positions: int) -> str:
    name = f"fair{secrets.token_hex(3)}"
    with connect(lab.url) as conn:
        conn.execute("INSERT INTO agents (name, heartbeat_s, heartbeat_at, state) "
                     "VALUES (%s, 60, clock_timestamp(), 'online')", (name,))  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO positions (agent, name, kind, cycler) VALUES (%s, %s, 'cell', %s)",
                [(name, f"{name}-p{k:02d}", f"cycler/{k}") for k in range(positions)],
            )
    return name


def _two_clients(lab: TempLab, per_client: int, position: str | None) -> list[str]:
    proto = load_protocol_text(PROTOCOL)
    go = threading.Barrier(2)
    sent: list[str] = []
    lock = threading.Lock()

    def one(tag: str) -> None:
        with connect(lab.url) as conn:
            go.wait()
            for k in range(per_client):
                rid = f"{tag}-{k:03d}-{secrets.token_hex(2)}"
                client.submit(lab.url, proto, PROTOCOL, run_id=rid, position=position,
                              conn=conn)  # fmt: skip
                with lock:
                    sent.append(rid)

    threads = [threading.Thread(target=one, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent


def test_runs_from_two_clients_at_once_spread_over_idle_positions(lab: TempLab) -> None:
    agent = _agent(lab, 40)
    _two_clients(lab, 20, None)
    with connect(lab.url) as conn:
        rows = conn.execute("SELECT position FROM runs WHERE agent = %s", (agent,)).fetchall()
    per_position = Counter(r[0] for r in rows)
    assert len(rows) == 40
    assert set(per_position.values()) == {1}, per_position.most_common(3)


def test_runs_from_two_clients_are_claimed_first_come_first_served(lab: TempLab) -> None:
    agent = _agent(lab, 1)
    _two_clients(lab, 15, f"{agent}/{agent}-p00")
    with connect(lab.url) as conn:
        order = [r[0] for r in conn.execute(
            "SELECT run_id FROM runs WHERE agent = %s ORDER BY submitted_at, run_id", (agent,)
        ).fetchall()]  # fmt: skip

    async def claim_all() -> list[str]:
        link = AsyncLink(lab.url, app="fair")
        got: list[str] = []
        try:
            while len(got) < len(order):
                claimed = await link.call(lambda c: registry.claim_runs(c, agent, [f"{agent}-p00"]))
                assert len(claimed) == 1  # one run at a time on a position
                got.append(claimed[0].run_id)
        finally:
            await link.aclose()
        return got

    claimed = asyncio.run(claim_all())
    assert claimed == order
    assert {r[0] for r in claimed} == {"a", "b"}

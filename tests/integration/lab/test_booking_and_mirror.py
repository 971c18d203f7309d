"""Leases with fencing tokens, and the durable mirror, against the real lab database."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from labrig.orchestrator.events import Event, EventKind
from labrig.orchestrator.lab import queries
from labrig.orchestrator.lab.booking import Fences, Leases, Notifier, StaleToken
from labrig.orchestrator.lab.db import AsyncLink, LabUnavailable, connect
from labrig.orchestrator.lab.mirror import Mirror
from labrig.orchestrator.lab.testing import TempLab


def _resource(lab: TempLab, owner: str) -> str:
    res = f"{owner}:eis/0"
    with connect(lab.url) as conn:
        conn.execute(
            "INSERT INTO agents (name, heartbeat_s, heartbeat_at, state) "
            "VALUES (%s, 60, clock_timestamp(), 'online')",
            (owner,),
        )
        conn.execute(
            "INSERT INTO resources (resource, agent, instrument, channel) "
            "VALUES (%s, %s, 'eis', 0)",
            (res, owner),
        )
    return res


@contextlib.asynccontextmanager
async def _leases(lab: TempLab, lease_s: float = 30.0) -> AsyncIterator[Any]:
    notifier = Notifier(lab.url)
    task = asyncio.create_task(notifier.run())
    links = [AsyncLink(lab.url, app="t") for _ in range(3)]
    try:
        await asyncio.wait_for(notifier.connected.wait(), 10)
        yield [Leases(link, notifier, agent=f"h{i}", lease_s=lease_s)
               for i, link in enumerate(links[:2])], Fences(links[2])  # fmt: skip
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for link in links:
            await link.aclose()


async def test_one_holder_at_a_time_and_stale_tokens_refused(lab: TempLab) -> None:
    res = _resource(lab, f"o{secrets.token_hex(3)}")
    async with _leases(lab) as ((a, b), fences):
        order: list[str] = []
        async with a.hold(res, "run-a") as la:
            await fences.check(res, la.token)
            waiter = asyncio.create_task(_use(b, res, "run-b", order))
            await asyncio.sleep(0.5)
            assert order == []  # b waits while a holds
            order.append("a done")
        await asyncio.wait_for(waiter, 10)
        lb_token = int(order[-1].split()[-1])
        assert lb_token > la.token  # tokens only grow
        with pytest.raises(StaleToken):
            await fences.check(res, la.token)  # a's token after b was granted
    assert order[0] == "a done"


async def _use(leases: Leases, res: str, run: str, order: list[str]) -> None:
    async with leases.hold(res, run) as lease:
        order.append(f"{run} token {lease.token}")


async def test_an_unrenewed_lease_expires_within_its_bound(lab: TempLab) -> None:
    res = _resource(lab, f"o{secrets.token_hex(3)}")
    async with _leases(lab, lease_s=1.0) as ((a, b), fences):
        hold = a.hold(res, "run-a")
        la = await hold.__aenter__()
        # the holder "dies": its renewal stops and it never ends the lease
        with connect(lab.url) as conn:
            conn.execute("UPDATE bookings SET expires_at = clock_timestamp() + interval '1 s' "
                         "WHERE id = %s", (la.booking_id,))  # fmt: skip
        renew_task = [t for t in asyncio.all_tasks() if t.get_name().startswith("lease ")]
        for t in renew_task:
            t.cancel()
        async with b.hold(res, "run-b") as lb:  # granted only once a's lease expired
            assert lb.token > la.token
        with pytest.raises(StaleToken):
            await fences.check(res, la.token)
        with contextlib.suppress(BaseException):
            await hold.__aexit__(None, None, None)
    with connect(lab.url) as conn:
        states = [b["state"] for b in queries.list_bookings(conn, active_only=False)
                  if b["resource"] == res]  # fmt: skip
    assert states.count("expired") == 1 and "holding" not in states


def _event(run: str, seq: int, kind: EventKind, **data: object) -> Event:
    return Event(run, "p0", seq, kind, time.time(), float(seq), dict(data))


async def test_mirror_survives_a_lost_database_without_loss_or_duplicates(
    lab: TempLab, tmp_path: Path
) -> None:
    run = f"m-{secrets.token_hex(4)}"
    with connect(lab.url) as conn:
        conn.execute("INSERT INTO runs (run_id, agent, position, protocol, protocol_yaml, state) "
                     "VALUES (%s, 'x', 'p0', 'p', '', 'claimed')", (run,))  # fmt: skip
    mirror = Mirror(tmp_path / "outbox.sqlite", batch=7)
    good = AsyncLink(lab.url, app="t")
    dead = AsyncLink(lab.url.replace(":5432/", ":1/"), app="t", deadline_s=2.0)
    try:
        mirror.publish_event(_event(run, 1, EventKind.run_started))
        for seq in range(2, 30):
            mirror.publish_event(_event(run, seq, EventKind.cycle_ended, cycle=seq - 1,
                                        discharge_capacity_mAh=float("nan")))  # fmt: skip
        with pytest.raises(LabUnavailable):
            await mirror.drain(dead)
        assert mirror.pending() == 29  # kept, in order
        mirror.close()
        mirror = Mirror(tmp_path / "outbox.sqlite", batch=7)  # a restarted agent
        mirror.publish_event(_event(run, 30, EventKind.run_ended, state="finished"))
        assert await mirror.drain(good) == 30
        # the run directory is read again (resume, run end): nothing doubles
        (tmp_path / run).mkdir()
        (tmp_path / run / "events.jsonl").write_text(
            "\n".join(_event(run, s, EventKind.notify).to_json() for s in (5, 6, 31)) + "\n"
        )
        mirror.backfill(tmp_path / run)
        await mirror.drain(good)
    finally:
        mirror.close()
        await good.aclose()
        await dead.aclose()
    with connect(lab.url) as conn:
        seqs = [e["seq"] for e in queries.run_events(conn, run)]
        cycles = queries.run_cycles(conn, run)
        (r,) = [x for x in queries.list_runs(conn) if x["run_id"] == run]
    assert seqs == list(range(1, 32))
    assert len(cycles) == 28 and cycles[0]["discharge_capacity_mAh"] is None
    assert r["state"] == "finished" and r["last_seq"] == 31

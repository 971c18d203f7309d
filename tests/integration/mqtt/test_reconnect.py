"""Broker restarts and outages: nothing lost, nothing out of order, publishing never stalls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from labrig.orchestrator.events import RunState
from labrig.orchestrator.mqtt import MqttPublisher, Outbox

from .conftest import MakeBroker
from .support import PREFIX, event, recording, settings_for, status, telemetry


def dedup(seqs: list[int]) -> tuple[list[int], int]:
    """What a subscriber keeps when it drops every seq it has already passed."""
    kept: list[int] = []
    for s in seqs:
        if not kept or s > kept[-1]:
            kept.append(s)
    return kept, len(seqs) - len(kept)


async def until(predicate: Callable[[], bool], within_s: float = 15.0) -> None:
    """Poll the publisher's counters (they change in its I/O thread)."""
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110 - nothing to await but time
            await asyncio.sleep(0.02)


async def test_restarts_during_a_stream_lose_and_reorder_nothing(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    broker = make_broker(persistence=True)
    n_events = 300
    settings = settings_for(broker, telemetry_hz=50.0)
    async with recording(
        broker, (f"{PREFIX}/+/events", f"{PREFIX}/+/status"), persistent_id="test-sub"
    ) as rec:
        async with MqttPublisher(settings, outbox=tmp_path / "outbox.sqlite") as pub:
            assert await pub.wait_connected(10)

            async def produce() -> None:
                for seq in range(1, n_events + 1):
                    # Sync calls: they return at once whether or not the broker is up.
                    pub.publish_event(event(seq))
                    pub.publish_status(status(cycle=seq))
                    pub.publish_telemetry(telemetry())
                    await asyncio.sleep(0.005)
                pub.publish_status(status(state=RunState.finished, cycle=n_events))

            async def restart_broker() -> None:
                for _ in range(3):
                    await asyncio.sleep(0.25)
                    await asyncio.to_thread(broker.stop)
                    await asyncio.sleep(0.3)  # events keep coming while it is down
                    await asyncio.to_thread(broker.start)
                    await until(lambda: pub.connected)

            async with asyncio.TaskGroup() as tg:
                tg.create_task(produce())
                tg.create_task(restart_broker())
            assert await pub.flush(30)
            stats = pub.stats
        await rec.wait_for(lambda r: dedup(r.event_seqs())[0][-1:] == [n_events], within_s=20)

    kept, duplicates = dedup(rec.event_seqs())
    assert kept == list(range(1, n_events + 1)), "every event exactly once, in order"
    assert stats.connects >= 4 and stats.events_published >= n_events
    assert stats.events_dropped == 0 and stats.events_pending == 0
    with Outbox(tmp_path / "outbox.sqlite") as ob:
        assert ob.pending(10) == []
    # The retained status is the final one.
    async with recording(broker, (f"{PREFIX}/+/status",)) as late:
        await late.wait_for(lambda r: r.on("/status"))
    assert late.json_on("/ch1/status")[-1]["state"] == "finished"
    print(f"duplicates after de-dup: {duplicates}, connects: {stats.connects}")


async def test_retained_state_is_republished_when_the_broker_lost_it(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(persistence=False)
    async with MqttPublisher(settings_for(broker)) as pub:
        pub.publish_status(status("ch1"))
        pub.publish_status(status("ch2", state=RunState.paused))
        assert await pub.flush(10)
        await asyncio.to_thread(broker.restart)  # persistence off: retained messages gone
        await until(lambda: pub.stats.connects >= 2)
        assert await pub.flush(10)
        async with recording(broker) as rec:
            await rec.wait_for(
                lambda r: len(r.on("/status")) == 2 and r.on("/station") and r.on("/state")
            )
    assert sorted(d["channel"] for d in rec.json_on("/status")) == ["ch1", "ch2"]
    assert all(retain for _, _, retain in rec.messages)
    assert rec.on("/orchestrator/state") == [b"online"]


async def test_outbox_written_while_broker_down_drains_in_a_later_publisher(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    broker = make_broker()
    broker.stop()
    path = tmp_path / "runs" / "r1" / "outbox.sqlite"
    settings = settings_for(broker, drain_timeout_s=0.5)
    async with MqttPublisher(settings, outbox=path) as pub:
        t0 = time.monotonic()
        for seq in range(1, 21):
            pub.publish_event(event(seq))
            pub.publish_telemetry(telemetry())
        calls_s = time.monotonic() - t0
        assert not await pub.flush(0.5)  # nowhere to send to
        stats = pub.stats
    assert not stats.connected and stats.connection_failures >= 1
    assert stats.telemetry_dropped == 20 and stats.events_pending == 20
    with Outbox(path) as ob:
        assert [e.seq for e in ob.pending(100)] == list(range(1, 21))

    broker.start()
    async with recording(broker, (f"{PREFIX}/+/events",)) as rec:
        async with MqttPublisher(settings, outbox=path) as pub:
            assert await pub.flush(10)
        await rec.wait_for(lambda r: len(r.on("/events")) == 20)
    assert rec.event_seqs() == list(range(1, 21))
    print(f"40 publish calls with the broker down took {calls_s * 1e3:.2f} ms")

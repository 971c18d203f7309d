"""Test helpers: a recording subscriber and scripted run objects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from labrig.orchestrator.events import Event, EventKind, RunState, RunStatus, Telemetry
from labrig.orchestrator.mqtt import MqttSettings
from labrig.orchestrator.mqtt.testing import LocalMosquitto

STATION = "rig-a"  # the orchestrator account of the shipped ACL example
PREFIX = f"labrig/{STATION}"


def settings_for(broker: LocalMosquitto, **kw: Any) -> MqttSettings:
    return MqttSettings.from_url(broker.url(STATION), station=STATION, **kw)


def event(seq: int, channel: str = "ch1", kind: EventKind = EventKind.notify) -> Event:
    return Event("run-1", channel, seq, kind, time.time(), float(seq), {"n": seq})


def status(channel: str = "ch1", state: RunState = RunState.running, **kw: Any) -> RunStatus:
    base: dict[str, Any] = {
        "run_id": "run-1",
        "channel": channel,
        "protocol": "cc-cycle",
        "state": state,
        "step": "charge",
        "step_index": 1,
        "cycle": 3,
        "voltage_V": 3.71,
        "current_A": 0.5,
        "temperature_C": 25.0,
        "run_time_s": 120.0,
        "eta_s": 3600.0,
        "updated": time.time(),
    }
    base.update(kw)
    return RunStatus(**base)


def telemetry(channel: str = "ch1", v: float = 3.7) -> Telemetry:
    return Telemetry("run-1", channel, time.time(), 1.0, v, 0.5, 25.0, 3, 1, "charge")


@dataclass
class Recorder:
    """Messages a subscriber received, in order: (topic, payload, retain)."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, suffix: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def json_on(self, suffix: str) -> list[Any]:
        return [json.loads(p) for p in self.on(suffix)]

    def event_seqs(self) -> list[int]:
        return [int(d["seq"]) for d in self.json_on("/events")]

    async def wait_for(self, predicate: Any, within_s: float = 15.0) -> None:
        async with asyncio.timeout(within_s):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def recording(
    broker: LocalMosquitto,
    topics: tuple[str, ...] = (f"{PREFIX}/#",),
    *,
    user: str = "viewer",
    persistent_id: str | None = None,
) -> AsyncIterator[Recorder]:
    """A subscriber that reconnects on its own; with ``persistent_id`` it keeps a
    persistent session (clean_session false, QoS 1), so nothing is lost while it is away.
    """
    rec = Recorder()
    subscribed = asyncio.Event()

    async def run() -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    broker.port,
                    username=user,
                    password=broker.passwords[user],
                    identifier=persistent_id,
                    clean_session=False if persistent_id else None,
                    keepalive=5,
                ) as client:
                    for topic in topics:
                        await client.subscribe(topic, qos=1)
                    subscribed.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else b""
                        rec.messages.append((m.topic.value, payload, m.retain))
                        rec.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(run(), name="test-subscriber")
        async with asyncio.timeout(10):
            await subscribed.wait()
        try:
            yield rec
        finally:
            task.cancel()

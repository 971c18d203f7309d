"""One round of the MQTT publisher's thread: the live readings (QoS 0, nothing to wait
for) go out before the statuses and events, which wait for their acknowledgements, so
a round's PUBACKs never hold the live view back."""

from __future__ import annotations

import asyncio
from typing import Any

from labrig.orchestrator.mqtt import MqttSettings
from labrig.orchestrator.mqtt._engine import Engine, MemoryStore, Shared
from labrig.orchestrator.mqtt.payloads import StationDescription
from tests.integration.mqtt.support import event, status, telemetry


class Client:
    """Records what is published, in order; an acknowledged publish takes a while."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, **_: Any) -> None:
        self.sent.append((topic.rsplit("/", 1)[-1], qos))
        if qos:
            await asyncio.sleep(0.01)  # waits for its PUBACK


def test_readings_go_out_before_the_statuses_and_events_of_the_same_round() -> None:
    settings = MqttSettings.from_url("mqtt://127.0.0.1:1883", station="rig")
    shared = Shared(settings)
    shared.station_dirty = False
    store = MemoryStore(shared)
    engine = Engine(shared, store, StationDescription("rig"), lambda *a: None)
    shared.statuses["ch1"] = status("ch1")
    shared.dirty["ch1"] = None
    store.add([event(1)])
    shared.telemetry.append(telemetry("ch1"))
    client = Client()
    assert asyncio.run(engine._send_some(client))  # type: ignore[arg-type]
    kinds = [k for k, _ in client.sent]
    assert kinds[0] == "telemetry" and {"status", "events"} <= set(kinds[1:]), kinds
    assert dict(client.sent)["telemetry"] == 0

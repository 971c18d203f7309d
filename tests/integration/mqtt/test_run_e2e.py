"""A real simulated run (executor on the virtual clock) with the MQTT publisher as a sink.

The run executes in a worker thread on its virtual-time loop, as ``labrig run --sim``
does; the test's subscriber and operator live on the test's real-time loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from labrig.orchestrator.events import Event, RunState, RunStatus, Telemetry
from labrig.orchestrator.mqtt import Outbox, attach_executor, open_publisher_for_run
from labrig.orchestrator.mqtt.schemas import SCHEMAS
from labrig.orchestrator.mqtt.testing import LocalMosquitto
from tests.helpers import run_virtual_strict

from .support import PREFIX, recording, settings_for

runner = pytest.importorskip("labrig.orchestrator.runner")
models = pytest.importorskip("labrig.protocols.models")


def _protocol(repeat: int) -> tuple[Any, str]:
    until_v = {"quantity": "voltage", "unit": "V"}
    text = yaml.safe_dump(
        {
            "name": "mqtt-e2e",
            "version": "1",
            "cell": {"cam_mass_mg": 8.4, "c_rate_basis_mA_per_g": 190},
            "limits": {"voltage_V": [2.2, 3.75], "current_abs_mA": 5.0},
            "defaults": {"record": {"every_s": 60}},
            "sequence": [
                {
                    "label": "cycling",
                    "repeat": repeat,
                    "steps": [
                        {
                            "step": "cc",
                            "direction": "charge",
                            "current": {"value": 1, "basis": "C"},
                            "until": [{**until_v, "op": ">=", "value": 3.68}],
                        },
                        {
                            "step": "cc",
                            "direction": "discharge",
                            "current": {"value": 1, "basis": "C"},
                            "until": [{**until_v, "op": "<=", "value": 2.28}],
                        },
                    ],
                }
            ],
        }
    )
    return models.Protocol.model_validate(yaml.safe_load(text)), text


class ListSink:
    """What the run emitted, for comparison with what MQTT delivered."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[RunStatus] = []

    def publish_event(self, event: Event) -> None:
        self.events.append(event)

    def publish_status(self, status: RunStatus) -> None:
        self.statuses.append(status)

    def publish_telemetry(self, telemetry: Telemetry) -> None:
        pass


async def _run(broker: LocalMosquitto, out_dir: Path, repeat: int, sink: ListSink) -> Any:
    protocol, text = _protocol(repeat)
    req = runner.RunRequest(protocol=protocol, protocol_yaml=text, out_dir=out_dir)

    async def main() -> Any:
        async with open_publisher_for_run(settings_for(broker), req) as pub:
            outcome, root = await runner.execute_run(
                req, sinks=[sink, pub], on_executor=lambda ex: attach_executor(pub, ex)
            )
            assert await pub.flush(10)
            return outcome, root

    return await asyncio.to_thread(run_virtual_strict, main())


async def test_simulated_run_streams_every_event_once_and_in_order(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    sink = ListSink()
    async with recording(broker) as rec:
        outcome, root = await _run(broker, tmp_path, 2, sink)
        n = len(sink.events)
        await rec.wait_for(lambda r: len(r.on("/events")) >= n)
    assert outcome.state is RunState.finished
    assert rec.event_seqs() == [e.seq for e in sink.events] == list(range(1, n + 1))
    delivered = [Event.from_json(p.decode()) for p in rec.on("/events")]
    assert [e.kind for e in delivered] == [e.kind for e in sink.events]
    assert delivered[0].kind.value == "run_started" and delivered[-1].kind.value == "run_ended"
    for doc in rec.json_on("/events") + rec.json_on("/status") + rec.json_on("/station"):
        jsonschema.validate(
            doc, SCHEMAS["events" if "seq" in doc else "status" if "state" in doc else "station"]
        )
    assert rec.json_on("/status")[-1]["state"] == "finished"
    channel = sink.events[0].channel
    assert channel in rec.json_on("/station")[-1]["channels"]
    with Outbox(root / "outbox.sqlite") as ob:  # the run's durable outbox, all acknowledged
        assert ob.pending(10) == []


async def test_operator_abort_stops_a_simulated_run_and_is_recorded(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    sink = ListSink()
    async with (
        recording(broker, (f"{PREFIX}/#",), user="operator") as rec,
        aiomqtt.Client(
            "127.0.0.1", broker.port, username="operator", password=broker.passwords["operator"]
        ) as operator,
    ):
        # Long enough that only the abort can end it within the test's deadline.
        run = asyncio.ensure_future(_run(broker, tmp_path, 2000, sink))
        try:
            await rec.wait_for(
                lambda r: any(d["kind"] == "step_started" for d in r.json_on("/events"))
            )
            channel = rec.json_on("/events")[0]["channel"]
            request = {"sender": "ana", "request_id": "abort-1"}
            await operator.publish(
                f"{PREFIX}/{channel}/cmd/abort", json.dumps(request).encode(), qos=1
            )
            outcome, _ = await asyncio.wait_for(run, 60)
        finally:
            if not run.done():
                run.cancel()
        await rec.wait_for(lambda r: any(d["kind"] == "run_ended" for d in r.json_on("/events")))
    assert outcome.state is RunState.aborted and "ana" in (outcome.reason or "")
    (reply,) = rec.json_on("/cmd/reply")
    assert reply["accepted"] is True and reply["request_id"] == "abort-1"
    commands = [e for e in sink.events if e.kind.value == "command"]
    assert len(commands) == 1 and commands[0].data["sender"] == "ana"
    assert commands[0].data["accepted"] is True
    assert commands[0].seq in rec.event_seqs()  # the audit event went out over MQTT too

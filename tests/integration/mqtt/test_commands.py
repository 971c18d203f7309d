"""Remote commands: operators may pause/resume/abort; everyone else is refused by the broker
ACL, and the application checks station, channel and payload again and audits all."""

from __future__ import annotations

import json

import aiomqtt
import jsonschema  # type: ignore[import-untyped]
import pytest

from labrig.orchestrator.mqtt import CommandRecord, MqttPublisher
from labrig.orchestrator.mqtt.schemas import SCHEMAS
from labrig.orchestrator.mqtt.testing import LocalMosquitto

from .support import PREFIX, recording, settings_for, status


def client(broker: LocalMosquitto, user: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, username=user, password=broker.passwords[user])


def body(request_id: str, sender: str = "ana") -> bytes:
    return json.dumps({"sender": sender, "request_id": request_id}).encode()


async def test_operator_commands_reach_the_run_and_everyone_else_is_refused(
    broker: LocalMosquitto,
) -> None:
    calls: list[tuple[str, str, str]] = []
    audit: list[CommandRecord] = []

    async def handler(channel: str, command: str, sender: str) -> tuple[bool, str]:
        calls.append((channel, command, sender))
        if command == "resume":
            raise RuntimeError("resume exploded")
        return command == "pause", "paused" if command == "pause" else "not now"

    pub = MqttPublisher(
        settings_for(broker), channels=["ch1"], command_handler=handler, command_audit=audit.append
    )
    async with (
        recording(broker, (f"{PREFIX}/+/cmd/reply",), user="operator") as replies,
        pub,
        client(broker, "operator") as operator,
        client(broker, "viewer") as viewer,
    ):
        assert await pub.wait_connected(10)
        pub.publish_status(status("ch1"))
        assert await pub.flush(10)

        def reply(rid: str) -> dict[str, object] | None:
            found = [d for d in replies.json_on("/cmd/reply") if d["request_id"] == rid]
            return found[-1] if found else None

        # 1. An operator's pause works: handler, reply, audit record.
        await operator.publish(f"{PREFIX}/ch1/cmd/pause", body("op-1"), qos=1)
        await replies.wait_for(lambda r: reply("op-1") is not None)
        assert calls == [("ch1", "pause", "ana")]
        r1 = reply("op-1")
        assert r1 is not None and r1["accepted"] is True and r1["reason"] == "paused"
        jsonschema.validate(r1, SCHEMAS["cmd/reply"])
        assert audit[-1].event_data() == {
            "command": "pause",
            "sender": "ana",
            "accepted": True,
            "reason": "paused",
            "request_id": "op-1",
            "topic": f"{PREFIX}/ch1/cmd/pause",
            "via": "mqtt",
        }

        # 2. Refused by the broker: the viewer's commands, an operator's forged reply,
        #    status or unknown command, and anything for another station.
        await viewer.publish(f"{PREFIX}/ch1/cmd/abort", body("viewer-1", "eve"), qos=1)
        forged = {"request_id": "op-9", "accepted": True}
        await operator.publish(f"{PREFIX}/ch1/cmd/reply", json.dumps(forged).encode(), qos=1)
        await operator.publish(f"{PREFIX}/ch1/status", b'{"state":"finished"}', qos=1)
        await operator.publish(f"{PREFIX}/ch1/cmd/reboot", body("op-reboot"), qos=1)
        await operator.publish("labrig/rig-b/ch1/cmd/abort", body("other-station"), qos=1)
        # 3. Refused by the application (and audited): unknown channel, malformed
        #    payloads, a handler that fails.
        await operator.publish(f"{PREFIX}/ch9/cmd/abort", body("op-ch9"), qos=1)
        await operator.publish(f"{PREFIX}/ch1/cmd/abort", b'{"request_id":"op-bad"}', qos=1)
        await operator.publish(f"{PREFIX}/ch1/cmd/abort", b"\x00garbage", qos=1)
        await operator.publish(f"{PREFIX}/ch1/cmd/resume", body("op-resume"), qos=1)
        # A barrier: once this is answered, everything sent before it has been handled.
        await operator.publish(f"{PREFIX}/ch1/cmd/pause", body("op-last", "bo"), qos=1)
        await replies.wait_for(lambda r: reply("op-last") is not None)

    assert calls == [("ch1", "pause", "ana"), ("ch1", "resume", "ana"), ("ch1", "pause", "bo")]
    ids = [d["request_id"] for d in replies.json_on("/cmd/reply")]
    assert "viewer-1" not in ids and "op-reboot" not in ids and "other-station" not in ids
    assert ids.count("op-9") == 0  # the forged reply never got through
    refused = {rec.request_id: rec.reason for rec in audit if not rec.accepted}
    assert "is not run by station 'rig-a'" in refused["op-ch9"]
    assert refused["op-bad"] == "malformed command: field 'sender' is missing"
    assert refused[None].startswith("malformed command: payload is not UTF-8 JSON")
    assert refused["op-resume"] == "handler error: resume exploded"
    assert len(audit) == 6  # every command that reached the run, none of the refused ones
    # The forged status never replaced the retained one.
    async with recording(broker, (f"{PREFIX}/ch1/status",)) as late:
        await late.wait_for(lambda r: r.on("/status"))
    assert late.json_on("/status")[-1]["state"] == "running"


async def test_anonymous_and_wrong_password_clients_cannot_connect(
    broker: LocalMosquitto,
) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)not authori[sz]ed|code:5"):
        async with aiomqtt.Client("127.0.0.1", broker.port):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", broker.port, username="operator", password="wrong"):
            pass


async def test_without_a_handler_every_command_is_refused(broker: LocalMosquitto) -> None:
    audit: list[CommandRecord] = []
    pub = MqttPublisher(settings_for(broker), channels=["ch1"], command_audit=audit.append)
    async with (
        recording(broker, (f"{PREFIX}/+/cmd/reply",), user="operator") as replies,
        pub,
        client(broker, "operator") as operator,
    ):
        assert await pub.wait_connected(10)
        await operator.publish(f"{PREFIX}/ch1/cmd/abort", body("a-1"), qos=1)
        await replies.wait_for(lambda r: r.on("/cmd/reply"))
    (answer,) = replies.json_on("/cmd/reply")
    assert answer["accepted"] is False and "no remote commands" in answer["reason"]
    assert [r.accepted for r in audit] == [False]
    assert pub.stats.commands_received == 1 and pub.stats.commands_refused == 1

"""Telemetry goes to paho as one write of many QoS 0 PUBLISH packets: the bytes must be
exactly the packets paho itself builds for the same messages, one by one."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from labrig.orchestrator.mqtt._engine import qos0_packets

MESSAGES = [
    ("labrig/rig-a/t0c001/telemetry", b'{"channel":"t0c001","voltage_V":3.7}'),
    ("labrig/rig-a/t0c002/telemetry", b""),
    ("l/" + "\u00e9" * 40 + "/telemetry", b"x" * 127),  # a UTF-8 topic; 1-byte length edge
    ("t", b"y" * 200),  # two-byte remaining length
    ("t/long", b"z" * 20_000),  # three-byte remaining length
]


def _paho_packets(protocol: int) -> bytes:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
    client._sock = object()  # type: ignore[assignment]  # "connected": paho builds packets
    out: list[bytes] = []

    def keep(command: int, packet: bytes, mid: int, qos: int, info: object = None) -> int:
        out.append(bytes(packet))
        return 0

    client._packet_queue = keep  # type: ignore[method-assign,assignment]
    try:
        for topic, payload in MESSAGES:
            client._send_publish(0, topic.encode(), payload, qos=0, retain=False, dup=False)
    finally:
        client._sock = None  # nothing to close
    return b"".join(out)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_batched_packets_are_the_ones_paho_builds(protocol: int) -> None:
    assert qos0_packets(MESSAGES, v5=protocol == mqtt.MQTTv5) == _paho_packets(protocol)


def test_a_topic_over_the_protocols_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="topic too long"):
        qos0_packets([("t" * 70_000, b"")])

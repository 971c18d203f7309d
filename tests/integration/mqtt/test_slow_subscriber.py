"""A subscriber that never reads must not stall the publisher or other subscribers."""

from __future__ import annotations

import socket
import struct

from labrig.orchestrator.mqtt import MqttPublisher
from labrig.orchestrator.mqtt.testing import LocalMosquitto

from .support import PREFIX, event, recording, settings_for, status, telemetry


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(header: int, body: bytes) -> bytes:
    return bytes([header]) + _varint(len(body)) + body


def stuck_subscriber(broker: LocalMosquitto, topic: str) -> socket.socket:
    """A raw MQTT 3.1.1 client that subscribes at QoS 1 and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", broker.port))
    connect = (
        _str("MQTT")
        + bytes([4, 0xC2])  # level 4; username, password, clean session
        + struct.pack("!H", 60)
        + _str("stuck-subscriber")
        + _str("viewer")
        + _str(broker.passwords["viewer"])
    )
    sock.sendall(_packet(0x10, connect))
    assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
    sock.sendall(_packet(0x82, struct.pack("!H", 1) + _str(topic) + b"\x01"))
    return sock


async def test_stuck_subscriber_never_stalls_publishing(broker: LocalMosquitto) -> None:
    n_events = 2000
    stuck = stuck_subscriber(broker, f"{PREFIX}/#")
    try:
        async with recording(broker, (f"{PREFIX}/+/events",)) as rec:
            async with MqttPublisher(settings_for(broker)) as pub:
                assert await pub.wait_connected(10)
                for seq in range(1, n_events + 1):
                    channel = f"ch{seq % 64}"
                    pub.publish_event(event(seq, channel=channel))
                    pub.publish_status(status(channel, cycle=seq))
                    pub.publish_telemetry(telemetry(channel))
                assert await pub.flush(30)
                stats = pub.stats
            await rec.wait_for(lambda r: len(r.on("/events")) == n_events, within_s=30)
    finally:
        stuck.close()
    assert sorted(rec.event_seqs()) == list(range(1, n_events + 1))
    assert stats.events_published == n_events and stats.events_dropped == 0
    assert stats.telemetry_accepted == 64  # one per channel at 1 Hz, the rest counted
    assert stats.telemetry_rate_limited == n_events - 64

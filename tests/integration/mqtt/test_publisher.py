"""The publisher against a real Mosquitto: topics, payload shapes, retained state, pacing,
last will."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]

from labrig.orchestrator.events import EventKind, RunState
from labrig.orchestrator.mqtt import InstrumentInfo, MqttPublisher, StationDescription
from labrig.orchestrator.mqtt.schemas import SCHEMAS
from labrig.orchestrator.mqtt.testing import LocalMosquitto

from .support import PREFIX, event, recording, settings_for, status, telemetry

ROOT = Path(__file__).resolve().parents[3]


async def test_plain_subscriber_sees_documented_shapes(broker: LocalMosquitto) -> None:
    desc = StationDescription(
        "rig-a",
        instruments=(InstrumentInfo("cycler", "cycler", "maccor", ("ch1", "ch2")),),
        channels=("ch1", "ch2"),
    )
    async with recording(broker) as rec:
        async with MqttPublisher(settings_for(broker), description=desc) as pub:
            assert await pub.wait_connected(10)
            pub.publish_status(status("ch1", state=RunState.pending))
            pub.publish_status(status("ch1"))  # latest wins
            for seq in range(1, 4):
                pub.publish_event(event(seq, kind=EventKind.step_started))
            pub.publish_telemetry(telemetry("ch1"))
            assert await pub.flush(10)
            await rec.wait_for(lambda r: len(r.on("/events")) == 3 and r.on("/telemetry"))
            stats = pub.stats
        await rec.wait_for(lambda r: r.on("/orchestrator/state")[-1:] == [b"offline"])

    assert rec.event_seqs() == [1, 2, 3]
    for suffix, schema in (
        ("/events", "events"),
        ("/status", "status"),
        ("/telemetry", "telemetry"),
        ("/station", "station"),
    ):
        docs = rec.json_on(suffix)
        assert docs, suffix
        for doc in docs:
            jsonschema.validate(doc, SCHEMAS[schema])
    assert rec.json_on("/ch1/status")[-1]["state"] == "running"
    station = rec.json_on("/station")[-1]
    assert station["channels"] == ["ch1", "ch2"] and station["instruments"][0]["name"] == "cycler"
    assert rec.on("/orchestrator/state") == [b"online", b"offline"]  # graceful exit
    assert (stats.events_published, stats.telemetry_published, stats.events_dropped) == (3, 1, 0)

    # A subscriber arriving later gets the retained picture: station, last status, state.
    async with recording(broker) as late:
        await late.wait_for(
            lambda r: r.on("/ch1/status") and r.on("/station") and r.on("/orchestrator/state")
        )
    retained = {t: (p, ret) for t, p, ret in late.messages}
    assert retained[f"{PREFIX}/orchestrator/state"] == (b"offline", True)
    assert json.loads(retained[f"{PREFIX}/ch1/status"][0])["state"] == "running"
    assert retained[f"{PREFIX}/ch1/status"][1] and retained[f"{PREFIX}/station"][1]
    assert not any(t.endswith(("/events", "/telemetry")) for t in retained)


async def test_telemetry_is_rate_limited_per_channel_and_drops_counted(
    broker: LocalMosquitto,
) -> None:
    now = [100.0]
    settings = settings_for(broker, telemetry_hz=2.0)
    pub = MqttPublisher(settings, clock=lambda: now[0])
    pub.publish_telemetry(telemetry("ch1"))  # not started: dropped, never raises
    async with recording(broker, (f"{PREFIX}/+/telemetry",)) as rec, pub:
        assert await pub.wait_connected(10)
        for _ in range(10):
            pub.publish_telemetry(telemetry("ch1"))
            pub.publish_telemetry(telemetry("ch2"))
        now[0] += 0.5
        pub.publish_telemetry(telemetry("ch1", v=4.1))
        assert await pub.flush(10)
        await rec.wait_for(lambda r: len(r.messages) == 3)
        s = pub.stats
    assert (s.telemetry_accepted, s.telemetry_rate_limited, s.telemetry_dropped) == (3, 18, 1)
    assert [d["voltage_V"] for d in rec.json_on("/ch1/telemetry")] == [3.7, 4.1]


async def test_killed_process_leaves_offline_via_last_will(broker: LocalMosquitto) -> None:
    async with recording(broker, (f"{PREFIX}/orchestrator/state",)) as rec:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.mqtt.holder",
            broker.url("rig-a"),
            "rig-a",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line.strip() == b"ready"
            await rec.wait_for(lambda r: r.on("/state")[-1:] == [b"online"])
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
            # keepalive is 2 s: the will is due within 1.5 x keepalive + 1 s at worst.
            await rec.wait_for(lambda r: r.on("/state")[-1:] == [b"offline"], within_s=10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_a_station_of_readings_reaches_a_subscriber_whole(broker: LocalMosquitto) -> None:
    """Telemetry of many channels goes out in batches written at once (one paho write
    of many PUBLISH packets): a subscriber gets every reading, on its channel's topic,
    with its own payload, and nothing else breaks in between."""
    channels = [f"c{k:03d}" for k in range(300)]
    async with (
        recording(broker) as rec,
        MqttPublisher(settings_for(broker), channels=channels) as pub,
    ):
        assert await pub.wait_connected(10)
        for k, ch in enumerate(channels):
            pub.publish_telemetry(telemetry(ch, v=3.0 + k / 1000))
        pub.publish_event(event(1))  # QoS 1 after the batch: still in order, acked
        assert await pub.flush(10)
        await rec.wait_for(lambda r: len(r.on("/telemetry")) == len(channels))
        stats = pub.stats
    got = {doc["channel"]: doc["voltage_V"] for doc in rec.json_on("/telemetry")}
    assert got == {ch: 3.0 + k / 1000 for k, ch in enumerate(channels)}
    topics = [t for t, _, _ in rec.messages if t.endswith("/telemetry")]
    assert topics == [f"{PREFIX}/{ch}/telemetry" for ch in channels]
    assert rec.event_seqs() == [1]
    assert (stats.telemetry_published, stats.events_dropped) == (len(channels), 0)

"""``labrig monitor --once`` against a real broker, as a user would run it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from labrig.orchestrator.events import RunState
from labrig.orchestrator.mqtt import MqttPublisher
from labrig.orchestrator.mqtt.testing import LocalMosquitto

from .support import PREFIX, settings_for, status, telemetry

ROOT = Path(__file__).resolve().parents[3]


async def labrig(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labrig.orchestrator.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "160", "LABRIG_MQTT_URL": ""},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_monitor_once_shows_channels_and_offline(broker: LocalMosquitto) -> None:
    url = broker.url("viewer")
    async with MqttPublisher(settings_for(broker)) as pub:
        pub.publish_status(status("ch1", cycle=7, voltage_V=3.912))
        pub.publish_status(status("ch2", state=RunState.paused))
        assert await pub.wait_connected(10)
        pub.publish_telemetry(telemetry("ch1", v=3.95))
        assert await pub.flush(10)
        code, out, err = await labrig("monitor", "--mqtt", url, "--once", "--json", "--wait", "2")
        assert code == 0, err
        rows = {r["channel"]: r for r in map(json.loads, out.splitlines())}
        assert set(rows) == {"ch1", "ch2"}
        assert rows["ch1"]["station"] == PREFIX and rows["ch1"]["cycle"] == 7
        assert rows["ch1"]["state"] == "running" and not rows["ch1"]["offline"]
        assert rows["ch2"]["state"] == "paused"

    code, out, err = await labrig(
        "monitor", "--mqtt", url, "--prefix", PREFIX, "--once", "--wait", "2"
    )
    assert code == 0, err
    assert "ch1" in out and "ch2" in out and out.count("OFFLINE") == 2


async def test_monitor_reports_bad_input_and_unreachable_broker(broker: LocalMosquitto) -> None:
    code, _, err = await labrig("monitor", "--mqtt", "http://x", "--once")
    assert code == 2 and "must start with mqtt:// or mqtts://" in err
    code, _, err = await labrig("monitor", "--mqtt", broker.url("viewer"), "--prefix", "a/#")
    assert code == 2 and "no '#'" in err
    broker.stop()
    code, _, err = await labrig("monitor", "--mqtt", broker.url("viewer"), "--once")
    assert code == 2 and "cannot monitor" in err and broker.passwords["viewer"] not in err

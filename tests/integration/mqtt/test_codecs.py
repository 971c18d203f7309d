"""Pure parts of the MQTT area: settings, topics, payload codecs, pacing, outbox, monitor model.

No broker needed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from labrig.orchestrator.events import Event, EventKind, RunState
from labrig.orchestrator.mqtt import (
    MqttConfigError,
    MqttSettings,
    Outbox,
    StationDescription,
    Topics,
)
from labrig.orchestrator.mqtt.monitor import MonitorModel, check_filter_prefix
from labrig.orchestrator.mqtt.pacing import Pacer
from labrig.orchestrator.mqtt.payloads import (
    CommandRecord,
    decode_command,
    encode_event,
    encode_reply,
    encode_station,
    encode_status,
    encode_telemetry,
)
from labrig.orchestrator.mqtt.schemas import SCHEMAS
from labrig.orchestrator.mqtt.testing import render_config

from .support import event, status, telemetry

# -- settings ---------------------------------------------------------------------------


def test_settings_from_url_full() -> None:
    s = MqttSettings.from_url("mqtts://op%40lab:p%3Ass@broker.lab:8884", station="rig-a")
    assert (s.host, s.port, s.tls) == ("broker.lab", 8884, True)
    assert (s.username, s.password) == ("op@lab", "p:ss")
    assert s.prefix == "labrig/rig-a"
    assert "p:ss" not in repr(s) and "p:ss" not in s.url


@pytest.mark.parametrize(
    ("url", "port", "tls"),
    [("mqtt://h", 1883, False), ("mqtts://h", 8883, True), ("mqtt://h:1999", 1999, False)],
)
def test_settings_default_ports(url: str, port: int, tls: bool) -> None:
    s = MqttSettings.from_url(url)
    assert (s.port, s.tls, s.prefix) == (port, tls, "labrig/default")


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("http://h", {}, "must start with mqtt:// or mqtts://"),
        ("mqtt://", {}, "has no host"),
        ("mqtt://h:99999", {}, "not valid"),
        ("mqtt://h/labrig", {}, "must not have a path"),
        ("mqtt://h", {"station": "a/b"}, "station name 'a/b'"),
        ("mqtt://h", {"prefix": "labrig/+"}, "prefix 'labrig/+' is not valid"),
        ("mqtt://h", {"prefix": "labrig//x"}, "is not valid"),
        ("mqtt://h", {"ca_file": "/nonexistent/ca.pem"}, "does not exist"),
        ("mqtt://h", {"telemetry_hz": 0.0}, "telemetry_hz must be > 0"),
    ],
)
def test_settings_errors_name_the_problem(
    url: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(MqttConfigError, match=message.replace("+", r"\+")):
        MqttSettings.from_url(url, **kwargs)  # type: ignore[arg-type]


def test_settings_environment_and_precedence(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    env = {
        "LABRIG_MQTT_URL": "mqtt://envhost:1884",
        "LABRIG_MQTT_USERNAME": "envuser",
        "LABRIG_MQTT_PASSWORD": "envpass",
        "LABRIG_MQTT_CA": str(ca),
        "LABRIG_MQTT_PREFIX": "site/x",
    }
    s = MqttSettings.from_env(station="rig-a", environ=env)
    assert (s.host, s.port, s.username, s.password) == ("envhost", 1884, "envuser", "envpass")
    assert (s.tls, s.ca_file, s.prefix) == (True, str(ca), "site/x")
    # The URL's own credentials and an explicit prefix win over the environment.
    s = MqttSettings.from_env(
        url="mqtt://u:p@cli:1", prefix="labrig/cli", station="rig-a", environ=env
    )
    assert (s.host, s.username, s.password, s.prefix) == ("cli", "u", "p", "labrig/cli")
    assert MqttSettings.from_env(environ={}).host == "127.0.0.1"


# -- topics -----------------------------------------------------------------------------


def test_topic_layout_and_command_parsing() -> None:
    t = Topics("labrig/rig-a")
    assert t.status("ch1") == "labrig/rig-a/ch1/status"
    assert t.events("a/b+#") == "labrig/rig-a/a_b__/events"  # never a wildcard or level
    assert t.state == "labrig/rig-a/orchestrator/state"
    assert t.command_filter == "labrig/rig-a/+/cmd/+"
    assert t.parse_command_topic("labrig/rig-a/ch1/cmd/pause") == ("ch1", "pause")
    assert t.parse_command_topic("labrig/rig-a/ch1/cmd/reply") == ("ch1", "reply")
    assert t.parse_command_topic("labrig/rig-b/ch1/cmd/pause") is None
    assert t.parse_command_topic("labrig/rig-a/ch1/status") is None
    assert t.parse_command_topic("labrig/rig-a-other/ch1/cmd/pause") is None


# -- commands ---------------------------------------------------------------------------


def test_decode_command_accepts_well_formed() -> None:
    req = decode_command("ch1", "pause", b'{"sender":"ana","request_id":"r-1","note":"why"}')
    assert (req.channel, req.command, req.sender, req.request_id, req.note) == (
        "ch1",
        "pause",
        "ana",
        "r-1",
        "why",
    )


@pytest.mark.parametrize(
    ("command", "payload", "message"),
    [
        ("reboot", b'{"sender":"a","request_id":"1"}', "unknown command 'reboot'"),
        ("pause", b"not json", "not UTF-8 JSON"),
        ("pause", b"\xff\xfe", "not UTF-8 JSON"),
        ("pause", b"[1,2]", "must be a JSON object"),
        ("pause", b'{"request_id":"1"}', "'sender' is missing"),
        ("pause", b'{"sender":"a"}', "'request_id' is missing"),
        ("pause", b'{"sender":5,"request_id":"1"}', "'sender' must be a non-empty string"),
        ("pause", b'{"sender":" ","request_id":"1"}', "'sender' must be a non-empty string"),
        ("pause", b'{"sender":"a","request_id":"1","x":1}', "unknown field"),
        ("pause", b'{"sender":"a\\u0000","request_id":"1"}', "control characters"),
        ("pause", json.dumps({"sender": "a" * 201, "request_id": "1"}).encode(), "longer"),
        ("pause", b" " * 5000, "more than 4096"),
    ],
)
def test_decode_command_refuses_malformed(command: str, payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_command("ch1", command, payload)


# -- payloads and their schemas ----------------------------------------------------------


def test_payloads_match_schemas_and_round_trip() -> None:
    ev = event(7, kind=EventKind.step_ended)
    d = json.loads(encode_event(ev))
    jsonschema.validate(d, SCHEMAS["events"])
    assert Event.from_json(json.dumps(d)) == ev
    st = status()
    jsonschema.validate(json.loads(encode_status(st)), SCHEMAS["status"])
    jsonschema.validate(json.loads(encode_telemetry(telemetry())), SCHEMAS["telemetry"])
    desc = StationDescription("rig-a", channels=("ch1",))
    jsonschema.validate(json.loads(encode_station(desc, ("ch2",))), SCHEMAS["station"])
    assert json.loads(encode_station(desc, ("ch1", "ch2")))["channels"] == ["ch1", "ch2"]
    rec = CommandRecord("ch1", "pause", "ana", "r1", True, "ok", "t", 1.0)
    jsonschema.validate(json.loads(encode_reply(rec)), SCHEMAS["cmd/reply"])
    jsonschema.validate({"sender": "ana", "request_id": "r1"}, SCHEMAS["cmd"])


def test_non_finite_numbers_become_null() -> None:
    st = status(voltage_V=math.nan, eta_s=math.inf)
    d = json.loads(encode_status(st))  # strict JSON: json.loads would accept NaN, so check
    assert d["voltage_V"] is None and d["eta_s"] is None
    assert b"NaN" not in encode_status(st) and b"Infinity" not in encode_status(st)
    ev = Event("r", "c", 1, EventKind.limit_trip, 1.0, 1.0, {"value": math.nan, "xs": [math.inf]})
    assert json.loads(encode_event(ev))["data"] == {"value": None, "xs": [None]}


# -- pacing -----------------------------------------------------------------------------


def test_pacer_limits_rate_per_channel_without_halving_jittery_producers() -> None:
    p = Pacer(1.0)
    assert [p.admit("a", t) for t in (0.0, 0.2, 0.85, 0.95, 1.5, 1.9)] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    assert p.admit("b", 0.2)  # channels are independent
    # A 1 Hz producer with jitter keeps all of its readings...
    q = Pacer(1.0)
    times = [i + (0.03 if i % 2 else -0.03) for i in range(1, 50)]
    assert all(q.admit("c", t) for t in times)
    # ...and a 10 Hz producer gets 1 Hz.
    r = Pacer(1.0)
    admitted = sum(r.admit("d", i / 10) for i in range(100))
    assert admitted in (10, 11)


# -- outbox -----------------------------------------------------------------------------


def test_outbox_keeps_order_marks_sent_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1" / "outbox.sqlite"
    originals = [event(i) for i in range(1, 6)]
    with Outbox(path) as ob:
        assert ob.pending(5) == [] and ob.pending_count() == 0
        assert not path.parent.exists()  # nothing to keep: no file, no directory yet
        assert ob.append(originals) == 5
        assert ob.append([event(3), event(6)]) == 1  # idempotent on (run_id, seq)
        assert [e.seq for e in ob.pending(3)] == [1, 2, 3]
        assert ob.mark_sent(2) == 2
        assert [e.seq for e in ob.pending(10)] == [3, 4, 5, 6]
        ob.mark_events_sent(ob.pending(1))
    with Outbox(path) as ob:  # durable: a new process sees the same pending events
        assert [e.seq for e in ob.pending(10)] == [4, 5, 6]
        assert ob.pending(1) == [originals[3]]  # stored exactly
        assert ob.pending_count() == 3
        db = ob._open()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_outbox_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="outbox"):
        Outbox(blocker / "outbox.sqlite").append([event(1)])
    (tmp_path / "bad.sqlite").write_text("this is not a database" * 100)
    with pytest.raises(OSError, match="outbox"):
        Outbox(tmp_path / "bad.sqlite")


# -- monitor model ----------------------------------------------------------------------


def test_monitor_model_rows_offline_and_stale() -> None:
    m = MonitorModel(stale_after_s=30)
    st = json.loads(encode_status(status(updated=1000.0)))
    assert m.apply("labrig/rig-a/ch1/status", json.dumps(st).encode()) == [("labrig/rig-a", "ch1")]
    m.apply("labrig/rig-a/orchestrator/state", b"online")
    (row,) = m.rows(now=1010.0)
    assert (row["state"], row["cycle"], row["voltage_V"], row["offline"], row["stale"]) == (
        "running",
        3,
        3.71,
        False,
        False,
    )
    tel = json.loads(encode_telemetry(telemetry(v=3.9)))
    tel["wall_time"] = 1020.0
    m.apply("labrig/rig-a/ch1/telemetry", json.dumps(tel).encode())
    (row,) = m.rows(now=1021.0)
    assert (row["voltage_V"], row["updated"], row["age_s"]) == (3.9, 1020.0, 1.0)
    assert m.rows(now=1100.0)[0]["stale"]  # running, nothing for 80 s
    assert m.apply("labrig/rig-a/orchestrator/state", b"offline") == [("labrig/rig-a", "ch1")]
    assert m.rows(now=1021.0)[0]["offline"]
    # A finished run is never stale; garbage is ignored.
    m.apply("labrig/rig-b/ch9/status", encode_status(status(state=RunState.finished, updated=0.0)))
    assert not m.rows(now=1e9)[1]["stale"]
    assert m.apply("labrig/rig-a/ch1/status", b"{not json") == []
    assert m.apply("labrig/rig-a/ch1/telemetry", b"[1]") == []


def test_monitor_keeps_readings_when_statuses_overtake_them() -> None:
    """Statuses (retained, QoS 1) and readings (QoS 0) travel on different topics: a
    status stamped a moment after a reading may arrive first. The reading still shows,
    and so do the readings after it (they never freeze behind the statuses)."""
    m = MonitorModel(stale_after_s=30)
    topic = "labrig/rig-a/ch1"
    for k in range(5):
        t = 1000.0 + k
        st = json.loads(encode_status(status(updated=t + 0.01, voltage_V=3.0, cycle=k)))
        tel = json.loads(encode_telemetry(telemetry(v=3.5 + k / 10)))
        tel["wall_time"] = t
        m.apply(f"{topic}/status", json.dumps(st).encode())  # overtook the reading
        m.apply(f"{topic}/telemetry", json.dumps(tel).encode())
        (row,) = m.rows(now=t + 0.02)
        assert (row["voltage_V"], row["cycle"], row["updated"]) == (3.5 + k / 10, 3, t + 0.01)
    # a newer status shows its readings; an older status of the same run changes nothing
    newer = json.loads(encode_status(status(updated=1010.0, voltage_V=3.3, state=RunState.paused)))
    m.apply(f"{topic}/status", json.dumps(newer).encode())
    older = json.loads(encode_status(status(updated=1009.0, voltage_V=3.1)))
    m.apply(f"{topic}/status", json.dumps(older).encode())
    (row,) = m.rows(now=1011.0)
    assert (row["state"], row["voltage_V"], row["updated"]) == ("paused", 3.3, 1010.0)
    late = json.loads(encode_telemetry(telemetry(v=3.9)))
    late["wall_time"] = 1003.5  # older than the newest reading: not shown
    m.apply(f"{topic}/telemetry", json.dumps(late).encode())
    assert m.rows(now=1011.0)[0]["voltage_V"] == 3.3


@pytest.mark.parametrize("prefix", ["labrig/#", "labrig//x", "lab+rig/x", ""])
def test_monitor_prefix_validation(prefix: str) -> None:
    with pytest.raises(MqttConfigError):
        check_filter_prefix(prefix)


def test_rendered_broker_config_keeps_the_shipped_tuning(tmp_path: Path) -> None:
    text = render_config(
        1234, tmp_path / "pw", tmp_path / "acl", persistence=False, data_dir=tmp_path
    )
    keys = [line.split()[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert "listener 1234 127.0.0.1" in text
    assert keys.count("listener") == 1 and keys.count("persistence") == 1
    for line in ("max_queued_messages 100000", "set_tcp_nodelay true", "allow_anonymous false"):
        assert line in text


def test_shipped_broker_config_is_found_without_the_repository_on_the_path(
    tmp_path: Path,
) -> None:
    """LocalMosquitto reads the config shipped as package data of labrig.orchestrator,
    not through a top-level ``orchestrator`` package (absent from an installed labrig)."""
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('orchestrator') is None, sys.path\n"
        "from labrig.orchestrator.mqtt.testing import shipped_file\n"
        "print(shipped_file('mosquitto.conf').count('listener'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 1


def test_monitor_step_is_the_step_of_the_reading_shown() -> None:
    """A discharge status, then a newer reading from the next charge: the row names the
    charge (the step of the record whose current it shows), never the discharge."""
    m = MonitorModel(stale_after_s=30)
    topic = "labrig/rig-a/ch1"
    st = status(updated=1000.0, step="Discharge at 1C", step_index=6, cycle=4, current_A=-1.6e-3)
    m.apply(f"{topic}/status", encode_status(st))
    tel = json.loads(encode_telemetry(telemetry()))
    tel.update(wall_time=1001.0, current_A=1.6e-3, step="Charge at 1C", step_index=7, cycle=5)
    m.apply(f"{topic}/telemetry", json.dumps(tel).encode())
    (row,) = m.rows(now=1001.5)
    assert (row["step"], row["cycle"], row["current_A"]) == ("Charge at 1C", 5, 1.6e-3)
    # a status that the reading overtook changes neither the step nor the readings
    old = status(updated=1000.5, step="Discharge at 1C", step_index=6, cycle=4, current_A=-1e-3)
    m.apply(f"{topic}/status", encode_status(old))
    (row,) = m.rows(now=1001.5)
    assert (row["step"], row["cycle"], row["current_A"]) == ("Charge at 1C", 5, 1.6e-3)
    # a newer status shows its own step with its own readings
    m.apply(f"{topic}/status", encode_status(status(updated=1002.0, step="Rest", current_A=0.0)))
    (row,) = m.rows(now=1002.5)
    assert (row["step"], row["current_A"]) == ("Rest", 0.0)

"""The lab page's model: MQTT payloads as published (docs/mqtt.md) to rows and states."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from labrig.orchestrator.web.model import LabModel, LiveBuffer, display_state, event_text

P = "labrig/rig-a"


def status(state: str = "running", run: str = "run-1", **kw: Any) -> bytes:
    d = {"run_id": run, "channel": "ch0", "protocol": "cc", "state": state, "step": "charge",
         "step_index": 1, "cycle": 3, "voltage_V": 3.7, "current_A": 0.001,
         "temperature_C": 25.0, "run_time_s": 100.0, "eta_s": 3600.0, "updated": 1000.0,
         "cell_id": "A1", **kw}  # fmt: skip
    return json.dumps(d).encode()


def telemetry(t: float, v: float, run: str = "run-1") -> bytes:
    return json.dumps({"run_id": run, "channel": "ch0", "wall_time": 1000.0 + t,
                       "run_time_s": t, "voltage_V": v, "current_A": 0.001,
                       "temperature_C": None, "cycle": 4, "step_index": 1}).encode()  # fmt: skip


def event(seq: int, kind: str, run: str = "run-1", **data: Any) -> bytes:
    d = {"run_id": run, "channel": "ch0", "seq": seq, "kind": kind, "wall_time": 1000.0 + seq,
         "run_time_s": float(seq), "data": data}  # fmt: skip
    return json.dumps(d).encode()


def test_station_message_lists_idle_channels_and_status_fills_a_row() -> None:
    m = LabModel()
    station = {"schema_version": 1, "station": "rig-a", "channels": ["ch0", "ch1"]}
    u = m.apply(f"{P}/station", json.dumps(station).encode())
    assert set(u.keys) == {f"{P}/ch0", f"{P}/ch1"}
    assert [r["state"] for r in m.views(1000.0)] == ["idle", "idle"]
    m.apply(f"{P}/ch0/status", status())
    row = m.view(f"{P}/ch0", 1001.0)
    assert row["state"] == "running" and row["station"] == "rig-a" and row["cell_id"] == "A1"
    assert row["cycle"] == 3 and row["voltage_V"] == 3.7 and not row["stale"]
    assert m.view(f"{P}/ch0", 1000.0 + 31)["stale"]  # no news for longer than 30 s


def test_telemetry_updates_readings_and_the_live_buffer_in_order() -> None:
    m = LabModel(live_points=4)
    m.apply(f"{P}/ch0/status", status())
    for t, v in [(1, 3.5), (2, 3.6), (2, 9.9), (3, 3.7)]:  # a repeat is ignored
        m.apply(f"{P}/ch0/telemetry", telemetry(t, v))
        # statuses come in between, stamped a moment after the reading
        m.apply(f"{P}/ch0/status", status(updated=1000.0 + t + 0.01, voltage_V=v, cycle=4))
    row = m.rows[f"{P}/ch0"]
    assert row.voltage_V == 3.7 and row.cycle == 4 and row.temperature_C == 25.0
    assert row.live is not None
    assert row.live.since(1.0)[:, 1].tolist() == [3.6, 3.7]
    for t in range(4, 10):
        m.apply(f"{P}/ch0/telemetry", telemetry(t, 3.0 + t / 10))
    assert row.live.since(-1)[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0]  # ring of 4


def test_a_status_overtaken_by_a_newer_reading_still_changes_the_state() -> None:
    m = LabModel()
    m.apply(f"{P}/ch0/status", status(updated=1000.0))
    m.apply(f"{P}/ch0/telemetry", telemetry(5.0, 3.65))  # read at 1005.0, arrives first
    m.apply(f"{P}/ch0/status", status("paused", updated=1004.99, voltage_V=3.6))
    row = m.rows[f"{P}/ch0"]
    assert row.run_state == "paused" and row.voltage_V == 3.65  # the newer reading stays
    assert m.view(f"{P}/ch0", 1006.0)["updated"] == 1005.0
    m.apply(f"{P}/ch0/status", status("running", updated=1004.0))  # older than the last
    assert row.run_state == "paused"


def test_the_step_shown_is_the_step_of_the_reading_shown() -> None:
    """A discharge status, then a newer reading of the next charge: the row names the
    charge, never the discharge with the charge's current."""
    m = LabModel()
    m.apply(f"{P}/ch0/status", status(step="Discharge at 1C", step_index=6, current_A=-1.6e-3))
    reading = json.loads(telemetry(5.0, 3.4))
    reading.update(current_A=1.6e-3, step="Charge at 1C", step_index=7, cycle=5)
    m.apply(f"{P}/ch0/telemetry", json.dumps(reading).encode())
    m.apply(f"{P}/ch0/status", status(updated=1004.0, step="Discharge at 1C", step_index=6))
    row = m.rows[f"{P}/ch0"]
    assert (row.step, row.step_index, row.cycle, row.current_A) == ("Charge at 1C", 7, 5, 1.6e-3)
    m.apply(f"{P}/ch0/status", status(updated=1006.0, step="Rest", step_index=8, cycle=5))
    assert (row.step, row.step_index) == ("Rest", 8)


def test_events_are_deduplicated_by_run_and_seq_and_give_the_last_event() -> None:
    m = LabModel()
    m.apply(f"{P}/ch0/status", status())
    assert m.apply(f"{P}/ch0/events", event(1, "run_started")).event is not None
    assert m.apply(f"{P}/ch0/events", event(2, "step_started", step="charge")).event
    assert m.apply(f"{P}/ch0/events", event(2, "step_started")).event is None  # repeat
    row = m.view(f"{P}/ch0", 1000.0)
    assert row["last_event"] == "step: charge" and row["last_event_kind"] == "step_started"
    assert [e["seq"] for e in m.rows[f"{P}/ch0"].events] == [1, 2]


def test_a_limit_trip_shows_tripped_until_the_next_run() -> None:
    m = LabModel()
    m.apply(f"{P}/ch0/status", status())
    m.apply(f"{P}/ch0/events", event(5, "limit_trip", quantity="voltage", value=4.4, limit=4.3))
    m.apply(f"{P}/ch0/status", status("failed", updated=1010.0))
    assert m.view(f"{P}/ch0", 1011.0)["state"] == "tripped"
    assert "LIMIT TRIP voltage 4.4" in (m.view(f"{P}/ch0", 1011.0)["last_event"] or "")
    m.apply(f"{P}/ch0/events", event(1, "run_started", run="run-2"))
    m.apply(f"{P}/ch0/status", status("running", run="run-2", updated=1020.0))
    assert m.view(f"{P}/ch0", 1021.0)["state"] == "running"
    assert [e["run_id"] for e in m.rows[f"{P}/ch0"].events] == ["run-2"]


def test_offline_station_waiting_runs_and_paused() -> None:
    m = LabModel()
    m.apply(f"{P}/ch0/status", status("paused"))
    assert m.view(f"{P}/ch0", 1000.0)["state"] == "paused"
    m.apply(f"{P}/ch0/status", status("running", updated=1001.0))
    assert m.set_waiting({"run-1"}) == (f"{P}/ch0",)
    assert m.view(f"{P}/ch0", 1001.0)["state"] == "waiting"
    assert m.set_waiting({"run-1"}) == ()
    m.set_waiting(())
    u = m.apply(f"{P}/orchestrator/state", b"offline")
    assert u.keys == (f"{P}/ch0",)
    assert m.view(f"{P}/ch0", 1001.0)["state"] == "offline"
    m.apply(f"{P}/orchestrator/state", b"online")
    m.apply(f"{P}/ch0/status", status("finished", updated=1002.0))
    v = m.view(f"{P}/ch0", 1003.0)
    assert v["state"] == "idle" and v["run_state"] == "finished"


def test_an_older_status_and_bad_payloads_change_nothing() -> None:
    m = LabModel()
    m.apply(f"{P}/ch0/status", status("running", updated=1005.0))
    assert m.apply(f"{P}/ch0/status", status("paused", updated=1000.0)).keys == ()
    assert m.rows[f"{P}/ch0"].run_state == "running"
    for topic, payload in [(f"{P}/ch0/status", b"not json"), (f"{P}/ch0/status", b"[1]"),
                           (f"{P}/ch0/telemetry", b'{"run_id": "run-1"}'),
                           (f"{P}/ch0/events", b'{"seq": "x"}'), ("x", b"")]:  # fmt: skip
        assert m.apply(topic, payload).keys == ()
    assert m.apply(f"{P}/ch0/cmd/reply", b'{"request_id": "r1"}').reply == {"request_id": "r1"}


def test_display_state_and_event_text_cover_every_case() -> None:
    m = LabModel()
    m.apply(f"{P}/ch0/status", status("pending"))
    row = m.rows[f"{P}/ch0"]
    assert display_state(row, None, frozenset()) == "starting"
    assert display_state(row, "offline", frozenset()) == "offline"
    assert event_text("wait", {"resource": "impedance:eis/0", "seconds": 12.5}) == (
        "waited 12.5 s for impedance:eis/0"
    )
    assert event_text("command", {"command": "abort", "sender": "ana (web)", "accepted": True}) == (
        "abort by ana (web) (accepted)"
    )
    assert event_text("run_ended", {"state": "finished"}) == "run finished"


def test_live_buffer_keeps_nan_for_missing_readings() -> None:
    b = LiveBuffer("r", 8)
    b.add(1.0, 3.7, None, None)
    got = b.since(0.0)
    assert got.shape == (1, 4) and got[0, 1] == 3.7 and np.isnan(got[0, 2])


def test_a_lab_agents_heartbeat_keeps_its_running_rows_fresh() -> None:
    m = LabModel(stale_after_s=30)
    m.feed(P, "ch0", "status", {"run_id": "run-1", "state": "running", "updated": 1000.0})
    assert m.view(f"{P}/ch0", 1040.0)["stale"]  # no status for 40 s (a long EIS step)
    assert m.touch(f"{P}/ch0", 1035.0) and not m.touch(f"{P}/ch0", 1040.0)  # every 10 s
    assert not m.view(f"{P}/ch0", 1040.0)["stale"]
    assert m.rows[f"{P}/ch0"].status_time == 1000.0  # statuses keep their own order
    assert not m.touch("labrig/none/ch9", 2000.0)

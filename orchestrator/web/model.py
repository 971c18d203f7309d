"""What the lab page shows: a pure model fed with MQTT messages as labrig publishes them.

:class:`LabModel` turns ``(topic, payload)`` into one :class:`ChannelRow` per (station
prefix, channel) and keeps, per channel, a short buffer of the current run's live
readings (:class:`LiveBuffer`) and its latest events. No I/O, no clock of its own: the
caller passes ``now``. The shapes of the payloads are those of ``docs/mqtt.md``.

The *display state* of a channel (:func:`display_state`) is one of

``offline``  the station's orchestrator is offline (its last will, or a clean exit)
``waiting``  the run waits for a shared instrument (known from the scheduler daemon)
``running``, ``starting`` (pending), ``paused``
``tripped``  the run ended after a limit trip
``idle``     no run, or the last run ended (``run_state`` says how)
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DISPLAY_STATES",
    "ChannelRow",
    "LabModel",
    "LiveBuffer",
    "Update",
    "display_state",
    "event_text",
]

DISPLAY_STATES = ("running", "starting", "paused", "waiting", "tripped", "offline", "idle")
_ENDED = ("finished", "aborted", "failed")
_EVENTS_KEPT = 200


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def event_text(kind: str, data: dict[str, Any]) -> str:
    """A short human line for an event (the lab page's *last event* column)."""

    def f(key: str, unit: str = "", digits: int = 4) -> str:
        v = _num(data.get(key))
        return "" if v is None else f"{v:.{digits}g}{unit}"

    if kind == "step_started":
        return f"step: {data.get('step') or data.get('step_type') or '?'}"
    if kind == "step_ended":
        return f"step ended ({data.get('reason') or 'done'})"
    if kind == "cycle_ended":
        return f"cycle {data.get('cycle', '?')} ended"
    if kind == "limit_trip":
        return f"LIMIT TRIP {data.get('quantity', '')} {f('value')} (limit {f('limit')})"
    if kind == "fault":
        return f"fault: {data.get('message', '')}"[:160]
    if kind == "run_ended":
        reason = data.get("reason")
        return f"run {data.get('state', 'ended')}" + (f": {reason}" if reason else "")
    if kind == "command":
        ok = "accepted" if data.get("accepted") else "refused"
        return f"{data.get('command')} by {data.get('sender')} ({ok})"
    if kind == "wait":
        waited = _num(data.get("seconds")) or 0.0
        took = "under 0.1 s" if waited < 0.1 else f"{waited:.3g} s"
        return f"waited {took} for {data.get('resource')}"
    if kind == "notify":
        return str(data.get("message", "note"))[:160]
    return kind.replace("_", " ")


class LiveBuffer:
    """The newest live readings of one run: a ring of (run time, V, I, T), fixed size."""

    def __init__(self, run_id: str, capacity: int) -> None:
        self.run_id = run_id
        self.capacity = capacity
        self._data = np.full((capacity, 4), np.nan)
        self._n = 0  # readings ever added

    def add(self, t: float, v: float | None, i: float | None, temp: float | None) -> None:
        if self._n and t <= self._data[(self._n - 1) % self.capacity, 0]:
            return  # a repeat or an older reading
        row = self._data[self._n % self.capacity]
        row[0] = t
        row[1] = np.nan if v is None else v
        row[2] = np.nan if i is None else i
        row[3] = np.nan if temp is None else temp
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def since(self, t_after: float) -> npt.NDArray[np.float64]:
        """Readings with run time > ``t_after``, oldest first, as an (n, 4) array."""
        n = len(self)
        if n == 0:
            return np.empty((0, 4))
        start = self._n - n
        idx = np.arange(start, self._n) % self.capacity
        rows = self._data[idx]
        return rows[rows[:, 0] > t_after]


@dataclass
class ChannelRow:
    """Everything known about one channel of one station."""

    station: str  # the station's topic prefix, e.g. "labrig/rig-a"
    channel: str
    run_id: str | None = None
    protocol: str | None = None
    cell_id: str | None = None
    run_state: str | None = None
    step: str | None = None
    step_index: int | None = None
    cycle: int | None = None
    voltage_V: float | None = None
    current_A: float | None = None
    temperature_C: float | None = None
    run_time_s: float | None = None
    eta_s: float | None = None
    updated: float | None = None  # wall time of the newest status or reading
    reading_time: float | None = None  # wall time of the newest reading
    reading_has_step: bool = False  # the newest reading named its step
    status_time: float | None = None  # wall time of the newest status
    last_event: str | None = None
    last_event_kind: str | None = None
    last_event_time: float | None = None
    tripped_run: str | None = None  # run id of the newest limit trip on this channel
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_EVENTS_KEPT))
    last_seq: dict[str, int] = field(default_factory=dict)
    live: LiveBuffer | None = None

    @property
    def key(self) -> str:
        return f"{self.station}/{self.channel}"


def display_state(row: ChannelRow, station_state: str | None, waiting: frozenset[str]) -> str:
    """The state the lab page shows (see the module docstring)."""
    if station_state == "offline":
        return "offline"
    rs = row.run_state
    if rs in ("running", "pending") and row.run_id is not None and row.run_id in waiting:
        return "waiting"
    if rs == "running":
        return "running"
    if rs == "pending":
        return "starting"
    if rs == "paused":
        return "paused"
    if rs in ("failed", "aborted") and row.run_id is not None and row.tripped_run == row.run_id:
        return "tripped"
    return "idle"


@dataclass(frozen=True, slots=True)
class Update:
    """What one message changed: rows (keys), and per run what the run page needs."""

    keys: tuple[str, ...] = ()
    run_id: str | None = None
    telemetry: tuple[float, float | None, float | None, float | None] | None = None
    event: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None


class LabModel:
    """Rows of every channel seen under a prefix filter; fed by :meth:`apply`."""

    def __init__(self, *, stale_after_s: float = 30.0, live_points: int = 1800) -> None:
        self.stale_after_s = stale_after_s
        self.live_points = live_points
        self.rows: dict[str, ChannelRow] = {}
        self.station_state: dict[str, str] = {}
        self.stations: dict[str, dict[str, Any]] = {}
        self.waiting: frozenset[str] = frozenset()
        self.waiting_for: dict[str, str] = {}  # run id -> the shared instrument it awaits
        # what a lab database says of a station (its agent's heartbeat): wins over MQTT
        self.station_override: dict[str, str] = {}
        self.station_note: dict[str, str] = {}
        self.messages = 0

    # -- input --------------------------------------------------------------------------
    def apply(self, topic: str, payload: bytes) -> Update:
        """Take one message; returns what changed (nothing for what it does not know)."""
        self.messages += 1
        levels = topic.split("/")
        if len(levels) < 2:
            return Update()
        if levels[-2:] == ["orchestrator", "state"]:
            return self._apply_state("/".join(levels[:-2]), payload)
        if levels[-1] == "station":
            return self._apply_station("/".join(levels[:-1]), payload)
        if len(levels) >= 4 and levels[-2] == "cmd" and levels[-1] == "reply":
            d = _load(payload)
            return Update(reply=d) if d is not None else Update()
        kind = levels[-1]
        if len(levels) < 3 or kind not in ("status", "telemetry", "events"):
            return Update()
        d = _load(payload)
        if d is None:
            return Update()
        return self.feed("/".join(levels[:-2]), levels[-2], kind, d)

    def feed(self, station: str, channel: str, kind: str, d: dict[str, Any]) -> Update:
        """One status, telemetry or events payload (a dict shaped as on MQTT) for the row
        ``station/channel``; sources without MQTT feed what they read this way."""
        row = self._row(station, channel)
        if kind == "status":
            return self._apply_status(row, d)
        if kind == "telemetry":
            return self._apply_telemetry(row, d)
        return self._apply_event(row, d)

    def add_channel(self, station: str, channel: str) -> Update:
        """A channel known to exist (an idle position)."""
        known = f"{station}/{channel}" in self.rows
        row = self._row(station, channel)
        return Update() if known else Update(keys=(row.key,))

    def touch(self, key: str, when: float, every_s: float = 10.0) -> bool:
        """News that the channel's station is alive at ``when`` (a lab agent's heartbeat):
        the row's age restarts, at most every ``every_s``; True when it did."""
        row = self.rows.get(key)
        if row is None or (row.updated is not None and when - row.updated < every_s):
            return False
        row.updated = when
        return True

    def set_station_override(
        self, states: dict[str, str], notes: dict[str, str]
    ) -> tuple[str, ...]:
        """Station states from elsewhere (a lab database: ``online``/``offline``), and a
        note for each; returns the keys of the rows that changed."""
        changed = {st for st in set(states) | set(self.station_override)
                   if states.get(st) != self.station_override.get(st)}  # fmt: skip
        changed |= {st for st in set(notes) | set(self.station_note)
                    if notes.get(st) != self.station_note.get(st)}  # fmt: skip
        self.station_override, self.station_note = dict(states), dict(notes)
        return tuple(k for k, r in self.rows.items() if r.station in changed)

    def _row(self, station: str, channel: str) -> ChannelRow:
        key = f"{station}/{channel}"
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = ChannelRow(station, channel)
        return row

    def _apply_state(self, station: str, payload: bytes) -> Update:
        self.station_state[station] = payload.decode("utf-8", "replace").strip()[:32]
        return Update(keys=tuple(k for k, r in self.rows.items() if r.station == station))

    def _apply_station(self, station: str, payload: bytes) -> Update:
        d = _load(payload)
        if d is None:
            return Update()
        self.stations[station] = d
        channels = d.get("channels")
        keys = []
        for ch in channels if isinstance(channels, list) else []:
            if isinstance(ch, str) and ch:
                level = ch.replace("/", "_").replace("+", "_").replace("#", "_")
                keys.append(self._row(station, level).key)
        return Update(keys=tuple(keys))

    def _new_run(self, row: ChannelRow, run_id: str | None) -> None:
        if run_id is not None and run_id != row.run_id:
            row.run_id = run_id
            row.live = None
            row.events.clear()
            row.step = row.step_index = row.cycle = row.eta_s = row.run_time_s = None
            row.reading_time = row.status_time = None
            row.reading_has_step = False

    def _apply_status(self, row: ChannelRow, d: dict[str, Any]) -> Update:
        updated = _num(d.get("updated"))
        last = row.status_time
        older = updated is not None and last is not None and updated < last
        if older and _str(d.get("run_id")) == row.run_id:
            return Update()  # an older status of the same run
        self._new_run(row, _str(d.get("run_id")))
        row.protocol = _str(d.get("protocol"))
        row.cell_id = _str(d.get("cell_id"))
        row.run_state = _str(d.get("state"))
        row.eta_s = _num(d.get("eta_s"))
        # statuses and readings travel on different topics and may overtake each other:
        # a status older than the newest reading keeps that reading's values (and the
        # step and cycle of its record)
        newer = updated is None or row.reading_time is None or updated >= row.reading_time
        if newer or not row.reading_has_step:
            row.step = _str(d.get("step"))
            row.step_index = _int(d.get("step_index"))
            row.cycle = _int(d.get("cycle"))
            row.run_time_s = _num(d.get("run_time_s"))
        if newer and "voltage_V" in d:  # (a lab database's run record has no readings)
            row.voltage_V = _num(d.get("voltage_V"))
            row.current_A = _num(d.get("current_A"))
            row.temperature_C = _num(d.get("temperature_C"))
        if updated is not None:
            row.status_time = updated
            row.updated = updated if row.updated is None else max(row.updated, updated)
        return Update(keys=(row.key,), run_id=row.run_id)

    def _apply_telemetry(self, row: ChannelRow, d: dict[str, Any]) -> Update:
        t_wall = _num(d.get("wall_time"))
        t_run = _num(d.get("run_time_s"))
        run_id = _str(d.get("run_id"))
        if t_wall is None or t_run is None or run_id is None:
            return Update()
        if run_id != row.run_id:
            if row.run_state not in (None, *_ENDED):
                return Update()  # a late reading of an earlier run
            self._new_run(row, run_id)
        if row.reading_time is not None and t_wall <= row.reading_time:
            return Update()  # older than the newest reading (statuses come in between)
        row.reading_time = t_wall
        row.updated = t_wall if row.updated is None else max(row.updated, t_wall)
        row.run_time_s = t_run
        row.voltage_V = _num(d.get("voltage_V"))
        row.current_A = _num(d.get("current_A"))
        temperature = _num(d.get("temperature_C"))
        if temperature is not None:
            row.temperature_C = temperature
        cycle = _int(d.get("cycle"))
        if cycle is not None:
            row.cycle = cycle
        step = _str(d.get("step"))
        row.reading_has_step = step is not None
        if step is not None:  # the step the reading's record belongs to
            row.step, row.step_index = step, _int(d.get("step_index"))
        if row.live is None:
            row.live = LiveBuffer(run_id, self.live_points)
        point = (t_run, row.voltage_V, row.current_A, temperature)
        row.live.add(*point)
        return Update(keys=(row.key,), run_id=run_id, telemetry=point)

    def _apply_event(self, row: ChannelRow, d: dict[str, Any]) -> Update:
        run_id = _str(d.get("run_id"))
        seq = _int(d.get("seq"))
        kind = _str(d.get("kind"))
        if run_id is None or seq is None or kind is None:
            return Update()
        if seq <= row.last_seq.get(run_id, 0):
            return Update()  # a repeat after a reconnect (docs/mqtt.md: dedupe by seq)
        if len(row.last_seq) > 8:
            row.last_seq.pop(next(iter(row.last_seq)))
        row.last_seq[run_id] = seq
        raw = d.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if run_id != row.run_id and (kind == "run_started" or row.run_state in (None, *_ENDED)):
            self._new_run(row, run_id)
            row.run_state = "pending" if kind == "run_started" else row.run_state
        if run_id == row.run_id:
            row.events.append(d)
        row.last_event = event_text(kind, data)
        row.last_event_kind = kind
        row.last_event_time = _num(d.get("wall_time"))
        if kind == "limit_trip":
            row.tripped_run = run_id
        return Update(keys=(row.key,), run_id=run_id, event=d)

    def set_waiting(self, runs: Mapping[str, str] | Iterable[str]) -> tuple[str, ...]:
        """Runs waiting for a shared instrument (run ids, or run id -> the instrument),
        from the scheduler or the lab's bookings; returns the keys of changed rows."""
        waiting_for = dict(runs) if isinstance(runs, Mapping) else dict.fromkeys(runs, "")
        new = frozenset(waiting_for)
        changed = new ^ self.waiting
        changed |= {r for r in new & self.waiting if waiting_for[r] != self.waiting_for.get(r)}
        self.waiting, self.waiting_for = new, waiting_for
        if not changed:
            return ()
        return tuple(k for k, r in self.rows.items() if r.run_id in changed)

    # -- output -------------------------------------------------------------------------
    def view(self, key: str, now: float) -> dict[str, Any]:
        """One row as the lab page receives it (JSON-ready)."""
        r = self.rows[key]
        station_state = self.station_override.get(r.station) or self.station_state.get(r.station)
        state = display_state(r, station_state, self.waiting)
        note = self.station_note.get(r.station) if state == "offline" else None
        if state == "waiting" and r.run_id is not None and self.waiting_for.get(r.run_id):
            note = f"waiting for {self.waiting_for[r.run_id]}"
        age = None if r.updated is None else max(0.0, now - r.updated)
        stale = state in ("running", "starting") and (age is None or age > self.stale_after_s)
        info = self.stations.get(r.station) or {}
        name = info.get("station") if isinstance(info.get("station"), str) else None
        return {
            "key": key,
            "station": name or r.station.rsplit("/", 1)[-1],
            "prefix": r.station,
            "channel": r.channel,
            "state": state,
            "note": note,
            "waiting_for": self.waiting_for.get(r.run_id or "") if state == "waiting" else None,
            "run_state": r.run_state,
            "stale": stale,
            "run_id": r.run_id,
            "protocol": r.protocol,
            "cell_id": r.cell_id,
            "step": r.step,
            "cycle": r.cycle,
            "voltage_V": r.voltage_V,
            "current_A": r.current_A,
            "temperature_C": r.temperature_C,
            "eta_s": r.eta_s,
            "updated": r.updated,
            "last_event": r.last_event,
            "last_event_kind": r.last_event_kind,
            "last_event_time": r.last_event_time,
        }

    def views(self, now: float, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        chosen = sorted(self.rows) if keys is None else [k for k in keys if k in self.rows]
        return [self.view(k, now) for k in chosen]

    def row_of_run(self, run_id: str) -> ChannelRow | None:
        """The channel whose newest run is ``run_id``, if any."""
        for row in self.rows.values():
            if row.run_id == run_id:
                return row
        return None


def _load(payload: bytes) -> dict[str, Any] | None:
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) else None

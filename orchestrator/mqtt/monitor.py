"""What ``labrig monitor`` shows: a pure model fed with MQTT messages, and its async shell.

:class:`MonitorModel` turns ``(topic, payload)`` into one row per (station, channel):
state, step, cycle, voltage, current, temperature, ETA, last update, and whether the
row is *offline* (the station's ``orchestrator/state`` says ``offline``) or *stale* (a
running channel with no update for ``stale_after_s``). :func:`watch` subscribes and feeds
the model; the CLI renders it.

Statuses and readings travel on different topics. A row shows the step, cycle and
readings of one record: the newest of the status and the reading (a reading names the
step its record belongs to), so the step never disagrees with the current shown.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from .settings import MqttConfigError, MqttSettings

__all__ = ["ChannelRow", "MonitorModel", "check_filter_prefix", "watch"]

_ACTIVE = {"running", "pending"}


def check_filter_prefix(prefix: str) -> str:
    """A monitor prefix may use '+' for whole levels (``labrig/+``), never '#'."""
    levels = prefix.split("/")
    for level in levels:
        if not level or "#" in level or ("+" in level and level != "+"):
            raise MqttConfigError(
                f"monitor prefix {prefix!r} is not valid: use '/'-separated levels, "
                "'+' only as a whole level, and no '#'"
            )
    return prefix


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class ChannelRow:
    """Everything known about one channel of one station."""

    station: str
    channel: str
    run_id: str | None = None
    protocol: str | None = None
    state: str | None = None
    step: str | None = None
    cycle: int | None = None
    voltage_V: float | None = None
    current_A: float | None = None
    temperature_C: float | None = None
    eta_s: float | None = None
    updated: float | None = None  # wall time of the newest status or reading
    status_time: float | None = None  # wall time of the newest status
    reading_time: float | None = None  # wall time of the newest reading
    reading_has_step: bool = False  # the newest reading named its step

    def as_dict(self, now: float, orchestrator: str | None, stale_after_s: float) -> dict[str, Any]:
        age = None if self.updated is None else max(0.0, now - self.updated)
        stale = bool(self.state in _ACTIVE and (age is None or age > stale_after_s))
        return {
            "station": self.station,
            "channel": self.channel,
            "run_id": self.run_id,
            "protocol": self.protocol,
            "state": self.state,
            "step": self.step,
            "cycle": self.cycle,
            "voltage_V": self.voltage_V,
            "current_A": self.current_A,
            "temperature_C": self.temperature_C,
            "eta_s": self.eta_s,
            "updated": self.updated,
            "age_s": None if age is None else round(age, 3),
            "orchestrator": orchestrator,
            "offline": orchestrator == "offline",
            "stale": stale,
        }


class MonitorModel:
    """Rows of every channel seen under a prefix filter; fed by :meth:`apply`."""

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self._rows: dict[tuple[str, str], ChannelRow] = {}
        self._state: dict[str, str] = {}

    def apply(self, topic: str, payload: bytes) -> list[tuple[str, str]]:
        """Take one message; returns the keys ``(station, channel)`` of changed rows."""
        levels = topic.split("/")
        if len(levels) >= 3 and levels[-2:] == ["orchestrator", "state"]:
            station = "/".join(levels[:-2])
            self._state[station] = payload.decode("utf-8", "replace").strip()
            return [k for k in self._rows if k[0] == station]
        if len(levels) < 3 or levels[-1] not in ("status", "telemetry"):
            return []
        try:
            d = json.loads(payload)
        except ValueError:
            return []
        if not isinstance(d, dict):
            return []
        key = ("/".join(levels[:-2]), levels[-2])
        row = self._rows.get(key) or ChannelRow(*key)
        self._rows[key] = row
        if levels[-1] == "status":
            self._apply_status(row, d)
        else:
            self._apply_telemetry(row, d)
        return [key]

    def _apply_status(self, row: ChannelRow, d: dict[str, Any]) -> None:
        run_id = d.get("run_id") if isinstance(d.get("run_id"), str) else None
        updated = _num(d.get("updated"))
        last = row.status_time
        if run_id == row.run_id and updated is not None and last is not None and updated < last:
            return  # an older status of the same run
        row.run_id = run_id
        row.protocol = d.get("protocol") if isinstance(d.get("protocol"), str) else None
        row.state = d.get("state") if isinstance(d.get("state"), str) else None
        row.eta_s = _num(d.get("eta_s"))
        if updated is not None:
            row.status_time = updated
        # Statuses and readings travel on different topics, so either may overtake the
        # other: the readings (and the step and cycle they belong to) of a status older
        # than the newest reading are not shown.
        newest = updated is None or row.reading_time is None or updated >= row.reading_time
        if newest or not row.reading_has_step:
            row.step = d.get("step") if isinstance(d.get("step"), str) else None
            cycle = d.get("cycle")
            row.cycle = cycle if isinstance(cycle, int) and not isinstance(cycle, bool) else None
        if newest:
            row.voltage_V = _num(d.get("voltage_V"))
            row.current_A = _num(d.get("current_A"))
            row.temperature_C = _num(d.get("temperature_C"))
        if updated is not None and (row.updated is None or updated > row.updated):
            row.updated = updated

    def _apply_telemetry(self, row: ChannelRow, d: dict[str, Any]) -> None:
        t = _num(d.get("wall_time"))
        if t is None or (row.reading_time is not None and t <= row.reading_time):
            return  # a repeat or older than the newest reading (statuses do not count)
        row.reading_time = t
        row.updated = t if row.updated is None else max(row.updated, t)
        row.voltage_V = _num(d.get("voltage_V"))
        row.current_A = _num(d.get("current_A"))
        temperature = _num(d.get("temperature_C"))
        if temperature is not None:
            row.temperature_C = temperature
        cycle = d.get("cycle")
        if isinstance(cycle, int) and not isinstance(cycle, bool):
            row.cycle = cycle
        step = d.get("step")
        row.reading_has_step = isinstance(step, str)
        if isinstance(step, str):
            row.step = step

    def row(self, key: tuple[str, str], now: float) -> dict[str, Any]:
        return self._rows[key].as_dict(now, self._state.get(key[0]), self.stale_after_s)

    def rows(self, now: float) -> list[dict[str, Any]]:
        return [self.row(k, now) for k in sorted(self._rows)]

    def stations(self) -> dict[str, str]:
        return dict(self._state)


def subscriptions(prefix: str) -> list[str]:
    return [
        f"{prefix}/orchestrator/state",
        f"{prefix}/+/status",
        f"{prefix}/+/telemetry",
    ]


async def watch(
    settings: MqttSettings,
    prefix: str,
    model: MonitorModel,
    on_change: Callable[[list[tuple[str, str]]], None],
    *,
    quiet_s: float | None = None,
    max_s: float | None = None,
) -> None:
    """Subscribe under ``prefix`` and feed ``model``; ``on_change`` gets changed keys.

    With ``quiet_s`` it returns once no message came for that long (retained messages
    arrive right after subscribing), or after ``max_s``. Otherwise it runs until
    cancelled; connection errors propagate as :class:`aiomqtt.MqttError`.
    """
    tls_context = ssl.create_default_context(cafile=settings.ca_file) if settings.tls else None
    async with aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        tls_context=tls_context,
        keepalive=settings.keepalive_s,
        timeout=settings.publish_timeout_s,
    ) as client:
        for topic in subscriptions(prefix):
            await client.subscribe(topic, qos=1)
        loop = asyncio.get_running_loop()
        deadline = None if max_s is None else loop.time() + max_s
        messages = client.messages
        while True:
            wait = quiet_s
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            try:
                async with asyncio.timeout(wait):
                    message = await anext(messages)
            except TimeoutError:
                if quiet_s is not None:
                    return
                continue
            payload = message.payload if isinstance(message.payload, bytes) else b""
            changed = model.apply(message.topic.value, payload)
            if changed:
                on_change(changed)

"""Glue between a run (``orchestrator.runner`` / ``orchestrator.executor``) and MQTT.

``open_publisher_for_run(url, req)`` gives the publisher for one run, with its durable
outbox at ``<out_dir>/<run-id>/outbox.sqlite`` (it fixes ``req.run_id`` if unset so the
run and the outbox agree); ``attach_executor(pub, ex)`` lets operators pause, resume and
abort that run and records every command as an ``Event(kind=command)`` of the run.
Project imports are deferred so ``import orchestrator.mqtt`` stays light.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..events import EventKind, RunState
from .outbox import Outbox
from .payloads import CommandRecord, InstrumentInfo, StationDescription
from .publisher import MqttPublisher
from .settings import MqttSettings

if TYPE_CHECKING:
    from ..run.lifecycle import RunLifecycle
    from ..runner import RunRequest
    from ..station import StationConfig

__all__ = ["attach_executor", "open_publisher_for_run", "station_description"]

log = logging.getLogger("labrig.mqtt")

_ROLES = ("cycler", "impedance", "chamber", "furnace")


def station_description(station: StationConfig, name: str | None = None) -> StationDescription:
    """The retained station message for a station file: instruments, channels, units."""
    used: dict[str, tuple[str, list[str]]] = {}
    for pos in station.positions:
        refs = [(role, getattr(pos, role)) for role in _ROLES]
        refs += [("gas", ref) for ref in pos.gas.values()]
        for role, ref in refs:
            if ref is None:
                continue
            inst = ref.partition("/")[0]
            channels = used.setdefault(inst, (role, []))[1]
            if pos.name not in channels:
                channels.append(pos.name)
    instruments = tuple(
        InstrumentInfo(
            name=inst,
            kind=used.get(inst, ("unused", []))[0],
            driver=cfg.driver,
            channels=tuple(used.get(inst, ("", []))[1]),
        )
        for inst, cfg in station.instruments.items()
    )
    return StationDescription(
        station=name or station.name,
        instruments=instruments,
        channels=tuple(p.name for p in station.positions),
    )


def attach_executor(pub: MqttPublisher, ex: RunLifecycle) -> None:
    """Route remote commands for ``ex.channel`` to the executor and record each of them."""

    async def handle(channel: str, command: str, sender: str) -> tuple[bool, str]:
        if channel != ex.channel:
            return False, f"channel {channel!r} is not part of run {ex.run_id}"
        state = ex.state
        if command == "abort":
            if state in (RunState.pending, RunState.running, RunState.paused):
                ex.request_abort(f"operator abort by {sender} (MQTT)")
                return True, "abort requested; the run goes to its safe state"
            return False, f"run is already {state.value}"
        if command == "pause":
            if state is RunState.running:
                ex.request_pause()
                return True, "pause requested; the run pauses at the next safe point"
            return False, f"run is {state.value}, not running"
        if command == "resume":
            if state is RunState.paused:
                ex.request_resume()
                return True, "resumed"
            return False, f"run is {state.value}, not paused"
        return False, f"unknown command {command!r}"

    def record(rec: CommandRecord) -> None:
        if rec.channel != ex.channel:
            return  # not this run's channel: audited in the log only
        try:
            # The executor numbers and stores the event like any other of the run.
            ex.record(EventKind.command, **rec.event_data())
        except Exception:
            log.exception("could not record command %s as a run event", rec.request_id)

    pub.set_command_handler(handle)
    pub.set_command_audit(record)


@contextlib.asynccontextmanager
async def open_publisher_for_run(
    url: str | MqttSettings | None, req: RunRequest
) -> AsyncIterator[MqttPublisher]:
    """The publisher for one run of :func:`orchestrator.runner.execute_run`.

    ``url`` is a broker URL (``--mqtt``; environment fills in the rest) or ready
    settings. Call :func:`attach_executor` from ``execute_run(on_executor=...)`` to take
    remote commands.
    """
    from ..store import new_run_id

    if isinstance(url, MqttSettings):
        settings = url
    else:
        settings = MqttSettings.from_env(url=url, station=req.station.name)
    if req.run_id is None:
        cell = req.protocol.cell
        req.run_id = new_run_id(req.protocol.name, cell.cell_id if cell else None)
    position = req.station.position(req.position)
    outbox = Outbox(req.out_dir / req.run_id / "outbox.sqlite")
    try:
        async with MqttPublisher(
            settings,
            outbox=outbox,
            description=station_description(req.station, settings.station),
            channels=[position.name],
        ) as pub:
            yield pub
    finally:
        outbox.close()

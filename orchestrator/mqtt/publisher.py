"""``MqttPublisher``: the MQTT sink of a run, and the way remote commands come in.

Usage (the executor's side)::

    settings = MqttSettings.from_env(url="mqtt://rig-a:secret@broker", station="rig-a")
    async with MqttPublisher(settings, outbox=run_dir / "outbox.sqlite") as pub:
        pub.set_command_handler(handle)        # async (channel, command, sender) -> (ok, why)
        pub.set_command_audit(record_command)  # (CommandRecord) -> None, on the run's loop
        await execute(protocol, sinks=[store, pub])

``publish_event``, ``publish_status`` and ``publish_telemetry`` are synchronous, take a few
microseconds and never raise: they put the object into a bounded queue (events), a
latest-wins slot per channel (status) or a rate-limited queue (telemetry) and return. The
network side runs in its own thread on real time (see :mod:`._engine` for why); the
command dispatcher runs as a task on the caller's loop inside a TaskGroup that the
``async with`` owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ..events import Event, RunStatus, Telemetry
from ._engine import Engine, EventStore, MemoryStore, OutboxStore, Shared
from .outbox import Outbox
from .pacing import Pacer
from .payloads import (
    CommandRecord,
    StationDescription,
    best_effort_ids,
    decode_command,
)
from .settings import MqttSettings
from .topics import channel_level

__all__ = ["CommandAudit", "CommandHandler", "MqttPublisher", "PublisherStats"]

log = logging.getLogger("labrig.mqtt")
audit_log = logging.getLogger("labrig.mqtt.audit")

CommandHandler = Callable[[str, str, str], Awaitable[tuple[bool, str]]]
"""``async (channel, command, sender) -> (accepted, reason)``; command is pause|resume|abort."""
CommandAudit = Callable[[CommandRecord], None]
"""Called on the run's loop for every command received, accepted or refused."""

_MAX_QUEUED_COMMANDS = 64


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """A snapshot of what the publisher has done (all counts since it was made)."""

    connected: bool
    connects: int
    connection_failures: int
    events_accepted: int
    events_published: int
    events_pending: int
    events_dropped: int
    statuses_published: int
    telemetry_accepted: int
    telemetry_published: int
    telemetry_rate_limited: int
    telemetry_dropped: int
    commands_received: int
    commands_refused: int


class MqttPublisher:
    """Publishes a run's events, status and telemetry to MQTT; implements ``EventSink``.

    ``outbox`` (an :class:`Outbox` or a path to one) keeps events durably until the
    broker acknowledges them; without it they wait in memory (bounded). ``channels``
    and ``description`` say which channels this station runs (commands for others are
    refused). ``clock`` (real seconds) paces telemetry; injectable for tests.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        outbox: Outbox | str | Path | None = None,
        description: StationDescription | None = None,
        channels: Iterable[str] = (),
        command_handler: CommandHandler | None = None,
        command_audit: CommandAudit | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._outbox_arg = outbox
        self._outbox: Outbox | None = None
        self._owns_outbox = False
        self.description = description or StationDescription(settings.station)
        self._handler = command_handler
        self._audit = command_audit
        self._clock = clock
        self._shared = Shared(settings)
        self._pacer = Pacer(1.0 / settings.telemetry_hz)
        self._channel_names: dict[str, str] = {}
        self._state = "new"  # new -> running -> closed
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commands: asyncio.Queue[tuple[str, str, str, bytes]] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        # Commands are taken for these channels and for any channel this publisher has
        # published for; the station description alone does not make a channel ours.
        for channel in channels:
            self._register_channel(channel)

    # -- configuration ----------------------------------------------------------------
    def set_command_handler(self, handler: CommandHandler | None) -> None:
        """Who decides on pause/resume/abort; without one every command is refused."""
        self._handler = handler

    def set_command_audit(self, audit: CommandAudit | None) -> None:
        """Who records every command (the run turns it into an ``Event(kind=command)``)."""
        self._audit = audit

    # -- EventSink ----------------------------------------------------------------------
    def publish_event(self, event: Event) -> None:
        """Queue an event for ``<channel>/events`` (QoS 1, durable with an outbox)."""
        try:
            sh = self._shared
            with sh.lock:
                if self._state == "closed" or len(sh.events_in) >= (
                    self.settings.max_pending_events
                ):
                    sh.counters.events_dropped += 1
                    return
                sh.events_in.append(event)
                sh.counters.events_accepted += 1
            self._register_channel(event.channel)
            self._poke()
        except Exception:  # a sink never raises into the run
            log.exception("MQTT publish_event failed")

    def publish_status(self, status: RunStatus) -> None:
        """Set the channel's latest status (retained); older unsent ones are replaced."""
        try:
            sh = self._shared
            with sh.lock:
                sh.statuses[status.channel] = status
                sh.dirty[status.channel] = None
            self._register_channel(status.channel)
            self._poke()
        except Exception:
            log.exception("MQTT publish_status failed")

    def publish_telemetry(self, telemetry: Telemetry) -> None:
        """Queue a live reading (QoS 0) unless it comes faster than ``telemetry_hz``."""
        try:
            sh = self._shared
            now = self._clock()
            with sh.lock:
                c = sh.counters
                if not sh.connected or self._state != "running":
                    c.telemetry_dropped += 1
                    return
                if not self._pacer.admit(telemetry.channel, now):
                    c.telemetry_rate_limited += 1
                    return
                if len(sh.telemetry) >= self.settings.max_pending_telemetry:
                    sh.telemetry.popleft()  # the oldest reading is the least useful
                    c.telemetry_dropped += 1
                sh.telemetry.append(telemetry)
                c.telemetry_accepted += 1
            self._register_channel(telemetry.channel)
            self._poke()
        except Exception:
            log.exception("MQTT publish_telemetry failed")

    # -- state --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._shared.connected

    @property
    def stats(self) -> PublisherStats:
        sh = self._shared
        with sh.lock:
            c = dataclasses.asdict(sh.counters)
            return PublisherStats(
                connected=sh.connected,
                events_pending=sh.pending_events + len(sh.events_in),
                **c,
            )

    async def flush(self, real_timeout_s: float = 10.0) -> bool:
        """Wait (real time) until everything queued so far is published; False on timeout."""
        self._poke(force=True)
        return await self._wait(lambda sh: not sh.has_work(), real_timeout_s)

    async def wait_connected(self, real_timeout_s: float = 10.0) -> bool:
        """Wait (real time) until connected and subscribed to commands; False on timeout."""
        return await self._wait(lambda sh: sh.connected, real_timeout_s)

    async def _wait(self, done: Callable[[Shared], bool], real_timeout_s: float) -> bool:
        sh = self._shared

        def block() -> bool:
            deadline = time.monotonic() + real_timeout_s
            with sh.idle:
                while not done(sh):
                    left = deadline - time.monotonic()
                    if left <= 0 or self._state == "closed":
                        return done(sh)
                    sh.idle.wait(min(left, 0.05))
                return True

        # A worker thread waits, so on the virtual clock the loop waits in real time too.
        return await asyncio.get_running_loop().run_in_executor(None, block)

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> MqttPublisher:
        if self._state != "new":
            raise RuntimeError("an MqttPublisher can be entered only once")
        loop = asyncio.get_running_loop()
        self._loop = loop
        store: EventStore
        if isinstance(self._outbox_arg, Outbox):
            self._outbox = self._outbox_arg
        elif self._outbox_arg is not None:
            self._outbox = Outbox(self._outbox_arg)
            self._owns_outbox = True
        store = OutboxStore(self._outbox) if self._outbox else MemoryStore(self._shared)
        self._commands = asyncio.Queue(_MAX_QUEUED_COMMANDS)
        engine = Engine(self._shared, store, self.description, self._command_from_thread)
        self._engine = engine
        self._thread = threading.Thread(
            target=engine.thread_main, name=f"labrig-mqtt-{self.settings.station}", daemon=True
        )
        self._thread.start()
        await loop.run_in_executor(None, engine.ready.wait, 5.0)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._dispatcher = self._tg.create_task(self._dispatch_commands(), name="mqtt-commands")
        with self._shared.lock:
            self._state = "running"
        self._poke(force=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._engine is not None and self._thread is not None and self._tg is not None
        with self._shared.lock:
            self._state = "closed"
        self._engine.request_stop()
        budget = self.settings.drain_timeout_s + self.settings.publish_timeout_s + 5.0
        try:
            # Joined from a worker thread: real time even on the virtual clock.
            await asyncio.shield(
                asyncio.get_running_loop().run_in_executor(None, self._thread.join, budget)
            )
        finally:
            if self._thread.is_alive():
                log.error("MQTT publisher thread did not stop within %.0f s", budget)
            if self._dispatcher is not None:
                self._dispatcher.cancel()
            await self._tg.__aexit__(None, None, None)
            if self._owns_outbox and self._outbox is not None:
                self._outbox.close()

    # -- internals ----------------------------------------------------------------------
    def _poke(self, force: bool = False) -> None:
        engine = self._engine
        if engine is None:
            return
        # One wake-up per batch, not per message: the engine clears the flag when it
        # takes the work.
        sh = self._shared
        if sh.poked and not force:
            return
        sh.poked = True
        engine.poke()

    def _register_channel(self, channel: str) -> None:
        level = channel_level(channel)
        if level in self._channel_names:
            return
        self._channel_names[level] = channel
        with self._shared.lock:
            self._shared.channels[channel] = None
            self._shared.station_dirty = True

    def _command_from_thread(self, topic: str, level: str, word: str, payload: bytes) -> None:
        """Called in the I/O thread: hand the command to the run's loop."""
        loop, queue = self._loop, self._commands
        if loop is None or queue is None:
            return

        def put() -> None:
            try:
                queue.put_nowait((topic, level, word, payload))
            except asyncio.QueueFull:
                self._finish(self._refusal(topic, level, word, payload, "too many commands"))

        with contextlib.suppress(RuntimeError):  # the run's loop has closed
            loop.call_soon_threadsafe(put)

    async def _dispatch_commands(self) -> None:
        assert self._commands is not None
        while True:
            topic, level, word, payload = await self._commands.get()
            try:
                record = await self._judge(topic, level, word, payload)
            except Exception as exc:  # never let one command end the dispatcher
                log.exception("MQTT command handling failed")
                record = self._refusal(topic, level, word, payload, f"internal error: {exc}")
            self._finish(record)

    def _refusal(
        self, topic: str, level: str, word: str, payload: bytes, reason: str
    ) -> CommandRecord:
        sender, request_id = best_effort_ids(payload)
        return CommandRecord(
            channel=self._channel_names.get(level, level),
            command=word,
            sender=sender,
            request_id=request_id,
            accepted=False,
            reason=reason,
            topic=topic,
            wall_time=time.time(),
        )

    async def _judge(self, topic: str, level: str, word: str, payload: bytes) -> CommandRecord:
        channel = self._channel_names.get(level)
        if channel is None:
            return self._refusal(
                topic,
                level,
                word,
                payload,
                f"channel {level!r} is not run by station {self.settings.station!r}",
            )
        try:
            request = decode_command(channel, word, payload)
        except ValueError as exc:
            return self._refusal(topic, level, word, payload, f"malformed command: {exc}")
        handler = self._handler
        if handler is None:
            return self._refusal(topic, level, word, payload, "this run takes no remote commands")
        try:
            async with asyncio.timeout(self.settings.command_timeout_s):
                accepted, reason = await handler(channel, word, request.sender)
        except TimeoutError:
            accepted, reason = False, "the run did not answer in time"
        except Exception as exc:
            log.exception("MQTT command handler failed")
            accepted, reason = False, f"handler error: {exc}"
        return CommandRecord(
            channel=channel,
            command=word,
            sender=request.sender,
            request_id=request.request_id,
            accepted=bool(accepted),
            reason=str(reason),
            topic=topic,
            wall_time=time.time(),
        )

    def _finish(self, record: CommandRecord) -> None:
        audit_log.info(
            "command %s on %s from %s (request %s): %s, %s",
            record.command,
            record.channel,
            record.sender,
            record.request_id,
            "accepted" if record.accepted else "refused",
            record.reason,
        )
        if self._audit is not None:
            try:
                self._audit(record)
            except Exception:
                log.exception("MQTT command audit callback failed")
        with self._shared.lock:
            if not record.accepted:
                self._shared.counters.commands_refused += 1
            self._shared.replies.append(record)
        self._poke(force=True)

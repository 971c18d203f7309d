"""The publisher's I/O side: one thread with its own real-time asyncio loop.

Why a thread: the run's loop may be the *virtual* clock (``orchestrator.clock``), which
jumps to the next timer whenever no I/O is ready. Broker round trips, PUBACK deadlines
and reconnect back-off must run on real time, and an fsync of the outbox or a slow
broker must never hold up control. The run's side only puts objects into shared,
bounded structures under a short lock (:class:`Shared`) and pokes this loop awake.

Inside the thread everything is owned: :meth:`Engine.run` holds a TaskGroup with the
persister (events -> outbox) and the connection loop (connect, announce, re-publish
retained state, send, receive commands, back off, reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiomqtt
import paho.mqtt.client as mqtt

from labrig.drivers.retry import Backoff, Retry

from ..clock import run_real_time
from ..events import Event, RunStatus, Telemetry
from .outbox import Outbox
from .payloads import (
    CommandRecord,
    StationDescription,
    encode_event,
    encode_reply,
    encode_station,
    encode_status,
    encode_telemetry,
)
from .settings import MqttSettings
from .topics import Topics

log = logging.getLogger("labrig.mqtt")

_EVENT_BATCH = 256
_TELEMETRY_BATCH = 512
_GATHER_S = 0.02  # after a wake-up, wait this long for more work before taking it


@dataclass
class Counters:
    """Counters shared by both threads (mutated under :attr:`Shared.lock`)."""

    events_accepted: int = 0
    events_published: int = 0
    events_dropped: int = 0
    statuses_published: int = 0
    telemetry_accepted: int = 0
    telemetry_published: int = 0
    telemetry_rate_limited: int = 0
    telemetry_dropped: int = 0
    commands_received: int = 0
    commands_refused: int = 0
    connects: int = 0
    connection_failures: int = 0


@dataclass
class Shared:
    """State both threads touch. Every access holds ``lock`` for a few microseconds."""

    settings: MqttSettings
    lock: threading.Lock = field(default_factory=threading.Lock)
    events_in: deque[Event] = field(default_factory=deque)
    statuses: dict[str, RunStatus] = field(default_factory=dict)
    dirty: dict[str, None] = field(default_factory=dict)
    telemetry: deque[Telemetry] = field(default_factory=deque)
    replies: deque[CommandRecord] = field(default_factory=deque)
    channels: dict[str, None] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    connected: bool = False
    poked: bool = False  # a wake-up is on its way to the engine
    busy: bool = False  # the engine is in the middle of a send round
    station_dirty: bool = True  # the station description must be (re)published
    pending_events: int = 0  # in the store, not yet acknowledged
    idle: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.idle = threading.Condition(self.lock)

    def has_work(self) -> bool:
        """Anything left to publish (caller holds the lock)."""
        return bool(
            self.busy
            or self.events_in
            or self.dirty
            or self.telemetry
            or self.replies
            or self.pending_events
            or self.station_dirty
        )


class EventStore(Protocol):
    def add(self, events: list[Event]) -> None: ...
    def pending(self, limit: int) -> list[Event]: ...
    def done(self, events: list[Event]) -> None: ...
    def count(self) -> int: ...


class MemoryStore:
    """Events kept in memory only (no outbox): bounded, oldest dropped and counted."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._q: deque[Event] = deque()

    def add(self, events: list[Event]) -> None:
        self._q.extend(events)
        excess = len(self._q) - self._shared.settings.max_pending_events
        if excess > 0:
            for _ in range(excess):
                self._q.popleft()
            with self._shared.lock:
                self._shared.counters.events_dropped += excess
            log.warning("MQTT event queue full: dropped %d oldest events", excess)

    def pending(self, limit: int) -> list[Event]:
        return [self._q[i] for i in range(min(limit, len(self._q)))]

    def done(self, events: list[Event]) -> None:
        sent = {id(e) for e in events}
        while self._q and id(self._q[0]) in sent:
            self._q.popleft()

    def count(self) -> int:
        return len(self._q)


class OutboxStore:
    """Events kept in the durable :class:`Outbox` until the broker acknowledged them."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._count = outbox.pending_count()

    def add(self, events: list[Event]) -> None:
        self._count += self._outbox.append(events)

    def pending(self, limit: int) -> list[Event]:
        return self._outbox.pending(limit)

    def done(self, events: list[Event]) -> None:
        self._count -= self._outbox.mark_events_sent(events)

    def count(self) -> int:
        return self._count


class Engine:
    """Runs in the I/O thread; see the module docstring."""

    def __init__(
        self,
        shared: Shared,
        store: EventStore,
        description: StationDescription,
        on_command: Callable[[str, str, str, bytes], None],
    ) -> None:
        self.shared = shared
        self.settings = shared.settings
        self.topics = Topics(self.settings.prefix)
        self.store = store
        self.description = description
        self._on_command = on_command
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None
        self.stop: asyncio.Event | None = None
        self.ready = threading.Event()
        s = self.settings
        self._reconnect = Retry(
            on=Exception,
            # jitter spreads many stations reconnecting to one restarted broker
            backoff=Backoff(s.reconnect_min_s, 2.0, s.reconnect_max_s, jitter=1.0),
            on_retry=self._connection_failed,
            sleep=self._pause,
        )
        with shared.lock:
            shared.pending_events = store.count()

    # -- called from the run's thread -------------------------------------------------
    def poke(self) -> None:
        """Wake the I/O loop (thread-safe, cheap)."""
        loop, wake = self.loop, self.wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(wake.set)

    def request_stop(self) -> None:
        loop, stop = self.loop, self.stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    # -- the thread ----------------------------------------------------------------------
    def thread_main(self) -> None:
        try:
            run_real_time(self._main())
        except BaseException:
            log.exception("MQTT publisher thread ended with an error")
        finally:
            self.ready.set()  # never leave the starter waiting

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.stop = asyncio.Event()
        self._sendable = asyncio.Event()
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as tg:
                persister = tg.create_task(self._persist_loop(), name="mqtt-persist")
                await self._connection_loop()
                persister.cancel()
        finally:
            # Whatever happened, events handed to us reach the durable store.
            self._persist_now()
            with self.shared.lock:
                self.shared.connected = False
                self.shared.idle.notify_all()

    def _persist_now(self) -> bool:
        sh = self.shared
        with sh.lock:
            if not sh.events_in:
                return False
            batch = list(sh.events_in)
            sh.events_in.clear()
        try:
            self.store.add(batch)
        except Exception:
            log.exception("MQTT outbox write failed; %d events not stored", len(batch))
            with sh.lock:
                sh.counters.events_dropped += len(batch)
            return False
        with sh.lock:
            sh.pending_events = self.store.count()
        return True

    async def _persist_loop(self) -> None:
        assert self.wake is not None
        while True:
            await self.wake.wait()
            # a moment for more to arrive: on a large station readings come a thousand
            # a second, and one wake-up (and one batch) each would cost more than sending
            await asyncio.sleep(_GATHER_S)
            self.wake.clear()
            self.shared.poked = False  # before taking the work, so nothing is missed
            self._persist_now()
            self._sendable.set()

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        tls_context: ssl.SSLContext | None = None
        if s.tls:
            tls_context = ssl.create_default_context(cafile=s.ca_file)
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id,
            will=aiomqtt.Will(self.topics.state, b"offline", qos=1, retain=True)
            if s.owns_station_state
            else None,
            keepalive=s.keepalive_s,
            timeout=s.publish_timeout_s,
            tls_context=tls_context,
            max_inflight_messages=max(20, s.inflight_window),
            logger=logging.getLogger("labrig.mqtt.client"),
        )

    async def _connection_loop(self) -> None:
        """Connect and serve until stopped; after a failure, back off and connect again.

        Every error is retried: a bug must not end publishing for the rest of the run
        (it is logged loudly). The back-off starts over once a connection is up.
        """
        await self._reconnect.call(self._connect_once)

    async def _connect_once(self) -> None:
        assert self.stop is not None
        if self.stop.is_set():
            return
        try:
            async with self._client() as client:
                self._reconnect.reset()
                await self._session(client)  # returns once stopped, drained, said goodbye
        finally:
            self._on_disconnected()

    async def _pause(self, delay: float) -> None:
        """The back-off wait, cut short when the engine is asked to stop."""
        assert self.stop is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.stop.wait()

    def _connection_failed(self, exc: BaseException, failures: int, delay: float) -> None:
        with self.shared.lock:
            self.shared.counters.connection_failures += 1
        group = exc if isinstance(exc, BaseExceptionGroup) else BaseExceptionGroup("", [exc])
        expected, bug = group.split((aiomqtt.MqttError, OSError, ssl.SSLError))
        if expected is not None:
            log.warning(
                "MQTT %s: %s; retrying in %.1f s", self.settings.url, expected.exceptions[0], delay
            )
        if bug is not None:
            log.error("MQTT publisher error; retrying", exc_info=bug.exceptions[0])

    def _on_disconnected(self) -> None:
        sh = self.shared
        with sh.lock:
            if sh.connected:
                log.info("MQTT disconnected from %s", self.settings.url)
            sh.connected = False
            # Stale live readings are worth nothing later: drop and count them.
            sh.counters.telemetry_dropped += len(sh.telemetry)
            sh.telemetry.clear()
            sh.idle.notify_all()

    async def _session(self, client: aiomqtt.Client) -> None:
        assert self.stop is not None
        sh = self.shared
        # aiomqtt warns on every publish beyond this many pending calls; our window is
        # bounded anyway, so the warning would only flood the log.
        client.pending_calls_threshold = 10_000
        if self.settings.owns_station_state:
            await client.publish(self.topics.state, b"online", qos=1, retain=True)
        with sh.lock:
            # The broker may have lost its retained messages: publish them all again.
            sh.station_dirty = True
            for channel in sh.statuses:
                sh.dirty[channel] = None
        await client.subscribe(self.topics.command_filter, qos=1)
        with sh.lock:
            sh.connected = True
            sh.counters.connects += 1
            sh.idle.notify_all()
        log.info("MQTT connected to %s as %s", self.settings.url, self.settings.prefix)
        self._sendable.set()
        async with asyncio.TaskGroup() as tg:
            sender = tg.create_task(self._send_loop(client), name="mqtt-send")
            receiver = tg.create_task(self._receive_loop(client), name="mqtt-receive")
            await self.stop.wait()
            # Closing: give what is queued a bounded time to go out, then say goodbye.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_timeout_s):
                    await self._drained()
            receiver.cancel()
            sender.cancel()
        if self.settings.owns_station_state:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.topics.state, b"offline", qos=1, retain=True, timeout=2.0)

    async def _drained(self) -> None:
        while True:
            self._persist_now()
            with self.shared.lock:
                if not self.shared.has_work():
                    return
            self._sendable.set()
            await asyncio.sleep(0.01)

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parsed = self.topics.parse_command_topic(message.topic.value)
            if parsed is None or parsed[1] == "reply":
                continue  # our own replies come back through the same filter
            payload = message.payload if isinstance(message.payload, bytes) else b""
            with self.shared.lock:
                self.shared.counters.commands_received += 1
            self._on_command(message.topic.value, parsed[0], parsed[1], payload)

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._sendable.wait()
            self._sendable.clear()
            with self.shared.lock:
                self.shared.busy = True
            try:
                while await self._send_some(client):
                    pass
            finally:
                with self.shared.lock:
                    self.shared.busy = False
                    self.shared.idle.notify_all()

    async def _send_some(self, client: aiomqtt.Client) -> bool:
        """One round over every kind of message; True if anything was sent."""
        sh = self.shared
        sent = False
        # Replies first: an operator is waiting for them.
        while True:
            with sh.lock:
                record = sh.replies[0] if sh.replies else None
            if record is None:
                break
            await client.publish(self.topics.reply(record.channel), encode_reply(record), qos=1)
            with sh.lock:
                sh.replies.popleft()
            sent = True
        # Live readings next: QoS 0, nothing to wait for, and the live view's delay is
        # theirs; the statuses and events below wait for their acknowledgements.
        with sh.lock:
            n = min(len(sh.telemetry), _TELEMETRY_BATCH)
            readings = [sh.telemetry.popleft() for _ in range(n)]
        if readings:
            await self._window(
                client,
                [(self.topics.telemetry(t.channel), encode_telemetry(t)) for t in readings],
                qos=0,
            )
            with sh.lock:
                sh.counters.telemetry_published += len(readings)
            sent = True
        with sh.lock:
            station_dirty, sh.station_dirty = sh.station_dirty, False
            extra = tuple(sh.channels)
        if station_dirty:
            try:
                await client.publish(
                    self.topics.station,
                    encode_station(self.description, extra),
                    qos=1,
                    retain=True,
                )
            except BaseException:
                sh.station_dirty = True
                raise
            sent = True
        with sh.lock:
            statuses = [sh.statuses[c] for c in sh.dirty]
            sh.dirty.clear()
        if statuses:
            try:
                await self._window(
                    client,
                    [(self.topics.status(s.channel), encode_status(s)) for s in statuses],
                    qos=1,
                    retain=True,
                )
            except BaseException:
                with sh.lock:  # not confirmed: send again next time
                    for s in statuses:
                        sh.dirty.setdefault(s.channel, None)
                raise
            with sh.lock:
                sh.counters.statuses_published += len(statuses)
            sent = True
        self._persist_now()
        events = self.store.pending(_EVENT_BATCH)
        if events:
            await self._window(
                client, [(self.topics.events(e.channel), encode_event(e)) for e in events], qos=1
            )
            # Only now, with every PUBACK in hand, are they sent.
            self.store.done(events)
            with sh.lock:
                sh.pending_events = self.store.count()
                sh.counters.events_published += len(events)
            sent = True
        return sent

    async def _window(
        self,
        client: aiomqtt.Client,
        messages: list[tuple[str, bytes]],
        *,
        qos: int,
        retain: bool = False,
    ) -> None:
        """Publish in order with a bounded number awaiting their acknowledgement."""
        if qos == 0 and not retain and messages:
            _publish_unconfirmed(client, messages[:-1])
            # paho writes in order: once the last one is out, all of them are (and a slow
            # broker holds the next batch back here)
            topic, payload = messages[-1]
            await client.publish(topic, payload, qos=0)
            return
        size = self.settings.inflight_window if qos else 256
        for start in range(0, len(messages), size):
            # Tasks start in creation order, so paho queues the packets in order.
            async with asyncio.TaskGroup() as tg:
                for topic, payload in messages[start : start + size]:
                    tg.create_task(client.publish(topic, payload, qos=qos, retain=retain))


def _publish_unconfirmed(client: aiomqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    """QoS 0 messages handed to paho as one write, without a task and a wait each.

    aiomqtt's ``publish`` costs a task, an event and a scan of its pending calls per
    message, and paho then writes each packet with a system call of its own and signals
    a condition for it; telemetry (a thousand readings a second on a large station)
    needs none of that: QoS 0 has no acknowledgement, and the caller awaits the batch's
    last message. The batch's PUBLISH packets (:func:`qos0_packets`) go into paho's
    queue of outgoing packets as one entry, in order with everything else paho sends.
    ``Client._client`` is the paho client aiomqtt drives, ``_packet_queue`` how paho
    queues a packet it has built (both pinned in .ci/constraints.txt; tests/integration/
    mqtt cover this path against a real broker, with a subscriber reading every message).
    """
    if not messages:
        return
    paho = client._client  # see the docstring
    if not paho.is_connected():
        raise aiomqtt.MqttCodeError(mqtt.MQTT_ERR_NO_CONN, "Could not publish telemetry")
    packets = qos0_packets(messages, v5=paho.protocol == mqtt.MQTTv5)
    # mid 0 is never a real message id: aiomqtt's publish-done callback passes it over
    rc = paho._packet_queue(mqtt.PUBLISH, packets, 0, 0, mqtt.MQTTMessageInfo(0))
    if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
        raise aiomqtt.MqttCodeError(rc, "Could not publish telemetry")


def qos0_packets(messages: list[tuple[str, bytes]], *, v5: bool = False) -> bytes:
    """MQTT PUBLISH packets (QoS 0, not retained) for ``messages``, back to back: fixed
    header 0x30, the remaining length as a variable-length integer, the topic as a
    length-prefixed UTF-8 string, (MQTT 5: an empty property list,) the payload."""
    out = bytearray()
    props = b"\x00" if v5 else b""
    for topic, payload in messages:
        name = topic.encode()
        if len(name) > 0xFFFF:
            raise ValueError(f"MQTT topic too long: {topic[:80]}...")
        n = 2 + len(name) + len(props) + len(payload)
        out.append(0x30)
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | 0x80 if n else byte)
            if not n:
                break
        out += len(name).to_bytes(2, "big")
        out += name
        out += props
        out += payload
    return bytes(out)

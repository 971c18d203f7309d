"""The web app's two live connections on a single PC: the MQTT broker and the daemon.

:class:`MqttLink` subscribes under a prefix filter (``labrig/+`` by default: every
station), feeds :class:`~.model.LabModel` and the :class:`~.feeds.Hub`, reconnects with
back-off on its own, and sends operators' commands as MQTT commands (the path of
``docs/mqtt.md``: the station's run judges and records them) and waits for the reply.

:class:`DaemonLink` asks the scheduler daemon of the runs directory (``labrig serve``,
``docs/daemon.md``) for its runs and the shared instruments' timeline every few seconds,
and passes submissions and commands to it over its control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

from ..daemon import DaemonError, DaemonUnavailable, socket_path
from ..mqtt import MqttSettings
from ..mqtt.topics import channel_level
from .feeds import Hub
from .model import LabModel

__all__ = ["CommandReply", "DaemonLink", "MqttLink"]

log = logging.getLogger("labrig.web")

CommandReply = dict[str, Any]


def subscriptions(prefix: str) -> list[str]:
    return [
        f"{prefix}/station",
        f"{prefix}/orchestrator/state",
        f"{prefix}/+/status",
        f"{prefix}/+/events",
        f"{prefix}/+/telemetry",
        f"{prefix}/+/cmd/reply",
    ]


class MqttLink:
    """Subscriber (and command sender) for the web app; :meth:`run` until cancelled."""

    def __init__(self, settings: MqttSettings, prefix: str, model: LabModel, hub: Hub) -> None:
        self.settings = settings
        self.prefix = prefix
        self.model = model
        self.hub = hub
        self.connected = False
        self.error: str | None = None
        self._client: aiomqtt.Client | None = None

    async def run(self) -> None:
        delay = self.settings.reconnect_min_s
        while True:
            try:
                await self._session()
                delay = self.settings.reconnect_min_s
            except aiomqtt.MqttError as exc:
                self.error = f"{self.settings.url}: {exc}"
                log.debug("MQTT link down: %s", exc)
            finally:
                self.connected = False
                self._client = None
            await asyncio.sleep(delay)
            delay = min(self.settings.reconnect_max_s, delay * 2)

    async def _session(self) -> None:
        s = self.settings
        tls = ssl.create_default_context(cafile=s.ca_file) if s.tls else None
        async with aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            tls_context=tls,
            keepalive=s.keepalive_s,
            timeout=s.publish_timeout_s,
        ) as client:
            for topic in subscriptions(self.prefix):
                await client.subscribe(topic, qos=1)
            self._client = client
            self.connected = True
            self.error = None
            log.info("MQTT: watching %s on %s", self.prefix, s.url)
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.hub.dispatch(self.model.apply(message.topic.value, payload))

    async def command(
        self, station: str, channel: str, command: str, sender: str, note: str | None = None
    ) -> CommandReply:
        """Send ``command`` to ``<station>/<channel>/cmd/<command>`` and wait for the reply.

        Raises :class:`ConnectionError` when not connected,
        and :class:`TimeoutError` when no reply came (e.g. the ACL dropped the publish).
        """
        client = self._client
        if client is None or not self.connected:
            raise ConnectionError(f"not connected to the MQTT broker ({self.error or 'starting'})")
        request_id = "web-" + uuid.uuid4().hex[:16]
        body: dict[str, Any] = {"sender": sender, "request_id": request_id}
        if note:
            body["note"] = note
        topic = f"{station}/{channel_level(channel)}/cmd/{command}"
        with self.hub.reply_waiter(request_id) as fut:
            await client.publish(topic, json.dumps(body).encode(), qos=1)
            async with asyncio.timeout(self.settings.command_timeout_s * 2):
                return await fut


class DaemonLink:
    """The scheduler daemon of a runs directory, polled every ``poll_s`` seconds."""

    def __init__(self, runs_dir: Path, *, poll_s: float = 2.0, timeout_s: float = 10.0) -> None:
        self.runs_dir = runs_dir
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.available = False
        self.error: str | None = "not asked yet"
        self.info: dict[str, Any] = {}
        self.jobs: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.watchdog_trips = 0
        self.fetched_at: float | None = None

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """One request on the control socket; the reply (``ok`` true) or an error raised."""
        path = socket_path(self.runs_dir)
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_unix_connection(
                    str(path), limit=64 * 1024 * 1024
                )
                try:
                    writer.write(json.dumps(message, allow_nan=False).encode() + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnavailable(
                f"no labrig daemon on {path} (start one with `labrig serve --runs {self.runs_dir}`)"
            ) from None
        except TimeoutError:
            raise DaemonUnavailable(f"the daemon on {path} did not answer in time") from None
        except OSError as exc:
            raise DaemonUnavailable(f"{path}: {exc.strerror or exc}") from None
        try:
            reply = json.loads(line)
        except ValueError:
            raise DaemonError("the daemon sent a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise DaemonError("the daemon sent a reply that is not an object")
        if not reply.get("ok"):
            raise DaemonError(str(reply.get("error", "refused")))
        return reply

    async def refresh(self) -> None:
        try:
            reply = await self.request({"op": "ls"})
            if not self.info:
                self.info = await self.request({"op": "ping"})
        except (DaemonUnavailable, DaemonError) as exc:
            self.available = False
            self.error = str(exc)
            self.jobs, self.timeline, self.info = [], [], {}
            return
        now = time.time()
        self.available = True
        self.error = None
        self.jobs = [j for j in reply.get("runs", []) if isinstance(j, dict)]
        self.timeline = [_absolute(t, now) for t in reply.get("timeline", [])]
        self.watchdog_trips = int(reply.get("watchdog_trips") or 0)
        self.fetched_at = now

    def waiting_runs(self) -> dict[str, str]:
        """Runs queued (not holding) for a shared instrument right now -> the instrument."""
        return {
            str(s["run_id"]): str(t.get("resource") or "")
            for t in self.timeline
            for s in t.get("slots", [])
            if not s.get("holding")
        }

    def job(self, run_id: str) -> dict[str, Any] | None:
        for j in self.jobs:
            if j.get("run_id") == run_id:
                return j
        return None


def _absolute(t: dict[str, Any], now: float) -> dict[str, Any]:
    """A timeline entry with times as epoch seconds (the daemon gives them from now)."""

    def at(rel: Any) -> float | None:
        return None if not isinstance(rel, int | float) else now + float(rel)

    slots = []
    for s in t.get("slots", []) if isinstance(t, dict) else []:
        slots.append(
            {
                "run_id": s.get("run_id"),
                "holding": bool(s.get("holding")),
                "since": at(s.get("since_s")),
                "expected_s": s.get("expected_s"),
                "expected_start": at(s.get("expected_start_s")),
                "expected_end": at(s.get("expected_end_s")),
            }
        )
    return {"resource": t.get("resource") if isinstance(t, dict) else None, "slots": slots}

"""Where the web app's data comes from: the :class:`DataSource` seam.

:class:`LocalSource` serves one PC with no database: channels live from MQTT, runs from
the runs directory, the queue, bookings, submissions and commands from the scheduler
daemon (``labrig serve``) of that directory, and commands to runs the daemon does not
hold over MQTT. A lab-wide source (the PostgreSQL lab database: runs, queue, agents,
bookings of several PCs) implements the same :class:`DataSource`;
:func:`lab_source` is where it plugs in and says it is not available yet.

Every command goes through the path a command from ``labrig pause|continue|abort``
(daemon socket) or an MQTT operator takes, so the run's own rules judge it and record
it as a ``command`` event: the web app adds no way around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import aiomqtt

from ..daemon import DaemonError, DaemonUnavailable
from ..mqtt import MqttSettings
from .auth import User
from .feeds import Hub, LabFeed, RunFeed
from .links import DaemonLink, MqttLink
from .model import LabModel
from .results import Results
from .rundata import RunNotFound, RunsDir, SeriesCache

__all__ = [
    "CommandResult",
    "DataSource",
    "LocalSource",
    "SourceUnavailable",
    "SubmitRequest",
    "lab_source",
]

log = logging.getLogger("labrig.web")
_ENDED = ("finished", "aborted", "failed", "stopped")


class SourceUnavailable(RuntimeError):
    """A data source that cannot be used (yet); the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    accepted: bool
    reason: str
    via: str  # "daemon", "mqtt" or "none"
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """A run to queue: a library protocol name or protocol YAML, for one cell."""

    cell_id: str
    protocol: str | None = None
    protocol_yaml: str | None = None
    position: str | None = None
    at: float | None = None
    after: str | None = None
    sets: tuple[tuple[str, str], ...] = ()


class DataSource(Protocol):
    """What the pages and the API read and ask, whatever stores it."""

    model: LabModel
    hub: Hub
    runs: RunsDir
    series: SeriesCache
    results: Results

    def connections(self) -> dict[str, Any]: ...
    def lab_rows(self, keys: set[str] | None = None) -> list[dict[str, Any]]: ...
    def lab_feed(self) -> contextlib.AbstractContextManager[LabFeed]: ...
    def run_feed(self, run_id: str) -> contextlib.AbstractContextManager[RunFeed]: ...
    def run_info(self, run_id: str) -> dict[str, Any]: ...
    def prefetch(self, run_id: str) -> None: ...
    def run_summaries(self, limit: int) -> list[dict[str, Any]]: ...
    async def queue(self) -> dict[str, Any]: ...
    async def command(
        self, user: User, run_id: str, command: str, note: str | None
    ) -> CommandResult: ...
    async def submit(self, user: User, request: SubmitRequest) -> dict[str, Any]: ...
    async def __aenter__(self) -> DataSource: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None: ...


def lab_source(url: str) -> DataSource:
    """The lab database source (``labrig web --lab URL``): not available yet."""
    raise SourceUnavailable(
        f"the lab database source ({url}) is not available yet: labrig web serves one PC "
        "from MQTT and its runs directory (leave out --lab); see docs/web.md"
    )


class LocalSource:
    """One PC: MQTT (optional), the runs directory and its scheduler daemon (optional)."""

    def __init__(
        self,
        runs_dir: Path,
        work_dir: Path,
        *,
        mqtt: MqttSettings | None,
        prefix: str = "labrig/+",
        stale_after_s: float = 30.0,
        daemon_poll_s: float = 2.0,
    ) -> None:
        self.model = LabModel(stale_after_s=stale_after_s)
        self.hub = Hub()
        self.runs = RunsDir(runs_dir)
        self.series = SeriesCache(self.runs)
        self.results = Results(self.runs, work_dir)
        self.mqtt = MqttLink(mqtt, prefix, self.model, self.hub) if mqtt is not None else None
        self.daemon = DaemonLink(runs_dir, poll_s=daemon_poll_s)
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> LocalSource:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        if self.mqtt is not None:
            self._tasks.append(self._tg.create_task(self.mqtt.run(), name="web-mqtt"))
        self._tasks.append(self._tg.create_task(self._poll_daemon(), name="web-daemon"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        assert self._tg is not None
        await self._tg.__aexit__(None, None, None)

    async def _poll_daemon(self) -> None:
        while True:
            await self.daemon.refresh()
            self.hub.mark_all(self.model.set_waiting(self.daemon.waiting_runs()))
            await asyncio.sleep(self.daemon.poll_s)

    # -- reading --------------------------------------------------------------------------
    def connections(self) -> dict[str, Any]:
        m = self.mqtt
        return {
            "mqtt": None
            if m is None
            else {
                "connected": m.connected,
                "url": m.settings.url,
                "prefix": m.prefix,
                "error": m.error,
            },
            "daemon": {
                "available": self.daemon.available,
                "error": self.daemon.error,
                "station": self.daemon.info.get("station"),
                "sim": self.daemon.info.get("sim"),
            },
            "runs_dir": str(self.runs.root),
            "lab": None,
        }

    def lab_rows(self, keys: set[str] | None = None) -> list[dict[str, Any]]:
        return self.model.views(time.time(), keys)

    def lab_feed(self) -> contextlib.AbstractContextManager[LabFeed]:
        return self.hub.lab_feed()

    def run_feed(self, run_id: str) -> contextlib.AbstractContextManager[RunFeed]:
        return self.hub.run_feed(run_id)

    def run_summaries(self, limit: int) -> list[dict[str, Any]]:
        rows = self.runs.summaries(limit)
        live = {r.run_id: r for r in self.model.rows.values() if r.run_id}
        for s in rows:
            row = live.get(s["run_id"])
            if row is not None and row.run_state:
                s["state"] = row.run_state
                s["cycle"] = row.cycle
        return rows

    def prefetch(self, run_id: str) -> None:
        """Read what a run page asks for first (blocking: call it in a worker thread while
        the browser loads the page's scripts)."""
        try:
            self.series.window(run_id, None, None, 1200)
            self.runs.events(run_id)
            self.runs.cycles(run_id)
        except (RunNotFound, OSError, ValueError):
            return  # the page's own requests report it

    def run_info(self, run_id: str) -> dict[str, Any]:
        """What the run page shows at the top: run.json facts and the live status."""
        row = self.model.row_of_run(run_id)
        try:
            meta = self.runs.meta(run_id)
        except RunNotFound:
            if row is None:
                raise
            meta = {"run_id": run_id, "t0": None}
        live = self.model.view(row.key, time.time()) if row is not None else None
        proto = meta.get("protocol") if isinstance(meta.get("protocol"), dict) else {}
        job = self.daemon.job(run_id)
        state = (live or {}).get("run_state") or meta.get("state")
        if job is not None and job.get("state") not in ("running", "paused"):
            state = state if state in _ENDED else job.get("state")
        return {
            "run_id": run_id,
            "state": state,
            "reason": meta.get("reason"),
            "protocol": (proto or {}).get("name") or (live or {}).get("protocol"),
            "cell": meta.get("cell"),
            "station": meta.get("station"),
            "position": meta.get("position"),
            "simulated": meta.get("simulated"),
            "created": meta.get("created"),
            "ended": meta.get("ended"),
            "t0": meta.get("t0"),
            "live": live,
            "job": job,
            "on_disk": "created" in meta,
        }

    # -- queue and bookings ---------------------------------------------------------------
    async def queue(self) -> dict[str, Any]:
        if not self.daemon.available:
            await self.daemon.refresh()
        d = self.daemon
        return {
            "available": d.available,
            "error": d.error,
            "station": d.info.get("station"),
            "runs": d.jobs,
            "timeline": d.timeline,
            "watchdog_trips": d.watchdog_trips,
            "fetched_at": d.fetched_at,
        }

    # -- commands -------------------------------------------------------------------------
    async def command(
        self, user: User, run_id: str, command: str, note: str | None
    ) -> CommandResult:
        """Pause, resume or abort ``run_id`` for ``user`` (the caller checked the role)."""
        sender = f"{user.name} (web)"
        await self.daemon.refresh()
        job = self.daemon.job(run_id)
        if job is not None and job.get("state") not in _ENDED:
            try:
                reply = await self.daemon.request({"op": command, "run": run_id, "sender": sender})
                return CommandResult(True, str(reply.get("message", "done")), "daemon")
            except DaemonError as exc:
                return CommandResult(False, str(exc), "daemon")
            except DaemonUnavailable:
                pass  # gone meanwhile: try MQTT
        row = self.model.row_of_run(run_id)
        if row is None or self.mqtt is None or row.run_state in (None, *_ENDED):
            return CommandResult(
                False,
                f"run {run_id} is not going on a station this app can reach "
                "(no daemon holds it and MQTT shows it neither running nor paused)",
                "none",
            )
        try:
            reply = await self.mqtt.command(row.station, row.channel, command, sender, note)
        except TimeoutError:
            return CommandResult(
                False,
                "no reply from the station in time: the web app's MQTT account may not be "
                "allowed to write commands (broker ACL), or the station is offline",
                "mqtt",
            )
        except (ConnectionError, aiomqtt.MqttError) as exc:
            return CommandResult(False, f"MQTT: {exc}", "mqtt")
        return CommandResult(
            bool(reply.get("accepted")),
            str(reply.get("reason") or ""),
            "mqtt",
            str(reply.get("request_id")),
        )

    async def submit(self, user: User, request: SubmitRequest) -> dict[str, Any]:
        """Validate the protocol here (errors name file and line), then queue it."""
        from labrig.protocols.errors import ProtocolError
        from labrig.protocols.library import library_names
        from labrig.protocols.loader import dump_protocol_yaml, load_protocol, load_protocol_text

        overrides = {k if k.startswith("cell.") else f"cell.{k}": v for k, v in request.sets}
        overrides["cell.cell_id"] = request.cell_id
        try:
            if request.protocol_yaml is not None:
                proto = load_protocol_text(
                    request.protocol_yaml, source_name="protocol from the web", overrides=overrides
                )
            elif request.protocol:
                if request.protocol not in library_names():
                    raise ValueError(f"no library protocol {request.protocol!r}")
                proto = await asyncio.to_thread(
                    load_protocol, request.protocol, overrides=overrides
                )
            else:
                raise ValueError("choose a library protocol or paste a protocol's YAML")
        except (ProtocolError, ValueError, OSError) as exc:
            raise ValueError(str(exc)) from None
        return await self.daemon.request(
            {
                "op": "submit",
                "protocol_yaml": dump_protocol_yaml(proto),
                "source": request.protocol or "web",
                "position": request.position,
                "at": request.at,
                "after": request.after,
                "seed": 0,
            }
        )

"""Where the web app's data comes from: the :class:`DataSource` seam.

Two sources implement it:

- :class:`~.local.LocalSource` serves one PC with no database: channels live from MQTT
  (or, without a broker, from the scheduler daemon's runs and the run directories), runs
  from the runs directory, the queue, bookings, submissions and commands from the
  daemon (``labrig serve``) of that directory;
- :class:`~.labsource.LabSource` serves a lab of many PCs from its PostgreSQL database
  (``labrig web --lab URL``): agents, positions, runs, queue, bookings, events and
  cycles, with live readings from MQTT when a broker is given.

Every command goes through the path a command from ``labrig pause|continue|abort``
(daemon socket, lab database) or an MQTT operator takes, so the run's own rules judge it
and record it as a ``command`` event: the web app adds no way around them.
:class:`BaseSource` holds what both share: the channel model, its fan-out to browsers,
the run directories and what is computed from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ..mqtt import MqttSettings
from .auth import User
from .bodies import Bodies, files_key
from .feeds import Hub, LabFeed, RunFeed
from .links import MqttLink
from .model import LabModel
from .results import Results
from .rundata import RunNotFound, RunsDir
from .series import SeriesCache, warm_up

__all__ = [
    "BaseSource",
    "CommandResult",
    "DataSource",
    "SourceRefused",
    "SourceUnavailable",
    "SubmitRequest",
    "load_submission",
]

log = logging.getLogger("labrig.web")
ENDED = ("finished", "aborted", "failed", "stopped")


class SourceUnavailable(RuntimeError):
    """A data source that cannot be used (now); the message says why and what to do."""


class SourceRefused(RuntimeError):
    """The scheduler or the lab refused a request (the message says why)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    accepted: bool
    reason: str
    via: str  # "daemon", "mqtt", "lab" or "none"
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
    bodies: Bodies

    def connections(self) -> dict[str, Any]: ...
    def role_of(self, user: User) -> User: ...
    def lab_rows(self, keys: set[str] | None = None) -> list[dict[str, Any]]: ...
    def lab_feed(self) -> contextlib.AbstractContextManager[LabFeed]: ...
    def run_feed(self, run_id: str) -> contextlib.AbstractContextManager[RunFeed]: ...
    def live_events(self, run_id: str) -> list[dict[str, Any]]: ...
    def stored_version(self, run_id: str, what: str) -> str | None: ...
    async def run_info(self, run_id: str) -> dict[str, Any]: ...
    async def run_summaries(self, limit: int) -> list[dict[str, Any]]: ...
    async def run_events(
        self, run_id: str, after_seq: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]: ...
    async def run_cycles(self, run_id: str) -> list[dict[str, Any]]: ...
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


class BaseSource:
    """The channel model and its feeds, the run directories, and the tasks that keep them
    (the MQTT subscriber when a broker is given, and each source's own loops)."""

    def __init__(
        self,
        runs_dir: Path,
        work_dir: Path,
        *,
        mqtt: MqttSettings | None,
        prefix: str = "labrig/+",
        stale_after_s: float = 30.0,
        cache_dir: Path | None = None,
    ) -> None:
        self.model = LabModel(stale_after_s=stale_after_s)
        self.hub = Hub()
        self.runs = RunsDir(runs_dir)
        self.series = SeriesCache(self.runs, cache_dir)
        self.bodies = Bodies(self.series.store.root)
        self.results = Results(self.runs, work_dir)
        self.mqtt = MqttLink(mqtt, prefix, self.model, self.hub) if mqtt is not None else None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._warming: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------------
    def _loops(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The source's own background loops (name, coroutine)."""
        return []

    async def __aenter__(self) -> Any:
        # pyarrow's first use costs a second (it imports pandas): pay it before the server
        # takes requests, not on the first run page somebody opens
        await asyncio.to_thread(warm_up)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        loops = self._loops()
        if self.mqtt is not None:
            loops.append(("web-mqtt", self.mqtt.run()))
        for name, coro in loops:
            self._tasks.append(self._tg.create_task(coro, name=name))
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

    def _warm(self, run_ids: set[str]) -> None:
        """Summarise new chunks of these (running) runs in the background, one run at a
        time, so their pages draw from summaries on disk."""
        todo = [r for r in run_ids if r not in self._warming]
        if not todo or self._tg is None:
            return
        self._warming.update(todo)

        async def warm() -> None:
            try:
                for run_id in todo:
                    await asyncio.to_thread(self.series.warm, run_id)
            finally:
                self._warming.difference_update(todo)

        self._tg.create_task(warm(), name="web-overview")

    # -- reading --------------------------------------------------------------------------
    def role_of(self, user: User) -> User:
        return user

    def lab_rows(self, keys: set[str] | None = None) -> list[dict[str, Any]]:
        return self.model.views(time.time(), keys)

    def lab_feed(self) -> contextlib.AbstractContextManager[LabFeed]:
        return self.hub.lab_feed()

    def run_feed(self, run_id: str) -> contextlib.AbstractContextManager[RunFeed]:
        return self.hub.run_feed(run_id)

    def stored_version(self, run_id: str, what: str) -> str | None:
        """A key of the run directory's files that ``what`` (``series``, ``cycles``,
        ``events``) is made of, changing whenever they change; None when ``what`` does
        not come from the run directory. :class:`RunNotFound` for an unknown run."""
        root = self.runs.path(run_id)
        if what == "series":
            data = root / "data"
            key = files_key((data, "part-"), (data, "staging-"))
            staged = any(True for _ in data.glob("staging-*")) if data.is_dir() else False
            return key + ("+staging" if staged else "")
        if what == "cycles":
            table = root / "cycles.parquet"
            return files_key(table if table.is_file() else root / "events.jsonl")
        if what == "events":
            return files_key(root / "events.jsonl")
        raise ValueError(f"no stored answer {what!r}")

    def live_events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's events MQTT brought (call on the event loop's thread)."""
        row = self.model.row_of_run(run_id)
        return list(row.events) if row is not None else []

    async def run_events(
        self, run_id: str, after_seq: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Events after ``after_seq`` (the newest ``limit``) and how many there are: the
        run directory's, and those MQTT brought since."""
        live = self.live_events(run_id)
        try:
            if after_seq <= 0 and limit <= 1000:
                stored = await asyncio.to_thread(self.runs.events_tail, run_id, limit)
            else:
                stored = await asyncio.to_thread(self.runs.events, run_id)
        except RunNotFound:
            stored = []
        return merge_events(stored, live, after_seq, limit)

    async def run_cycles(self, run_id: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.runs.cycles, run_id)

    async def _file_info(self, run_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """run.json (read in a worker thread; a stub when the run is not on this computer)
        and the live row (read here: the model changes on this thread only)."""
        row = self.model.row_of_run(run_id)
        live = self.model.view(row.key, time.time()) if row is not None else None
        try:
            meta = await asyncio.to_thread(self.runs.meta, run_id)
        except RunNotFound:
            meta = {"run_id": run_id, "t0": None}
        return meta, live


def merge_events(
    stored: list[dict[str, Any]], live: list[dict[str, Any]], after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Stored and live events by sequence number, once each; (the newest ``limit`` after
    ``after_seq``, the highest sequence number)."""
    seen = {e.get("seq") for e in stored}
    merged = [e for e in (*stored, *(e for e in live if e.get("seq") not in seen))
              if isinstance(e.get("seq"), int) and e["seq"] > after_seq]  # fmt: skip
    merged.sort(key=lambda e: e["seq"])
    total = max((e["seq"] for e in merged), default=after_seq)
    return merged[-limit:], total


def run_facts(meta: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """The facts at the top of a run page from run.json and the live row."""
    from .rundata import epoch

    proto = meta.get("protocol") if isinstance(meta.get("protocol"), dict) else {}
    return {
        "run_id": meta.get("run_id"),
        "state": (live or {}).get("run_state") or meta.get("state"),
        "reason": meta.get("reason"),
        "protocol": (proto or {}).get("name") or (live or {}).get("protocol"),
        "cell": meta.get("cell"),
        "station": meta.get("station"),
        "position": meta.get("position"),
        "simulated": meta.get("simulated"),
        "created": epoch(meta.get("created")),
        "ended": epoch(meta.get("ended")),
        "t0": meta.get("t0"),
        "cycles": meta.get("cycles"),
        "live": live,
        "on_disk": "created" in meta,
    }


async def load_submission(request: SubmitRequest) -> tuple[Any, str]:
    """The protocol of a submission, validated here (errors name file and line), and its
    YAML as it will run; :class:`ValueError` with the message otherwise."""
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
            proto = await asyncio.to_thread(load_protocol, request.protocol, overrides=overrides)
        else:
            raise ValueError("choose a library protocol or paste a protocol's YAML")
    except (ProtocolError, ValueError, OSError) as exc:
        raise ValueError(str(exc)) from None
    return proto, dump_protocol_yaml(proto)

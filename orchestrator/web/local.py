"""One PC, no database: :class:`LocalSource`.

Channels come from MQTT when a broker is given. Without one, :class:`FileRows` fills the
lab page from what this PC has: the scheduler daemon's runs (state, step, cycle, V, I,
T, ETA, polled every few seconds) and the run directories (``run.json``, the tail of
``events.jsonl``) for runs no daemon holds, such as a ``labrig run`` in a terminal; a run
whose files stop changing shows as stale. Runs come from the runs directory; the queue,
bookings, submissions and commands from the daemon; commands to runs the daemon does not
hold go over MQTT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiomqtt

from ..daemon import DaemonError, DaemonUnavailable
from ..mqtt import MqttSettings
from ..mqtt.topics import channel_level
from .auth import User
from .feeds import Hub
from .links import DaemonLink
from .model import LabModel
from .rundata import RunNotFound, RunsDir
from .source import (
    ENDED,
    BaseSource,
    CommandResult,
    SourceRefused,
    SourceUnavailable,
    SubmitRequest,
    load_submission,
    run_facts,
)

__all__ = ["FileRows", "LocalSource"]

_ON_CHANNEL = {"running": "running", "paused": "paused", "detached": "detached",
               "finished": "finished", "aborted": "aborted", "failed": "failed",
               "stopped": "stopped"}  # fmt: skip
Feed = tuple[str, str, str, dict[str, Any]]  # station prefix, channel, kind, payload


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class FileRows:
    """Rows of the lab page without MQTT: the daemon's runs, then the run directories.

    :meth:`collect` (blocking: call it in a worker thread) reads what changed and returns
    payloads shaped as on MQTT; :meth:`apply` feeds them to the model on the event loop,
    so the ordering rules of MQTT messages hold here too.
    """

    def __init__(self, runs: RunsDir, base: str = "labrig", newest: int = 1000) -> None:
        self.runs = runs
        self.base = base
        self.newest = newest
        self._fed: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._events_key: dict[str, float | None] = {}

    def prefix(self, station: str | None) -> str:
        return f"{self.base}/{channel_level(station or 'local')}"

    def collect(self, info: dict[str, Any], jobs: list[dict[str, Any]], now: float) -> list[Feed]:
        out: list[Feed] = []
        station = info.get("station") if isinstance(info.get("station"), str) else None
        for pos in info.get("positions") or []:
            if isinstance(pos, str):
                out.append((self.prefix(station), channel_level(pos), "channel", {}))
        shown: dict[tuple[str, str], str] = {}
        order = sorted(jobs, key=lambda j: (j.get("state") in ("running", "paused"),
                                            j.get("started") or 0), reverse=True)  # fmt: skip
        for j in order:
            state = _ON_CHANNEL.get(str(j.get("state")))
            where = (self.prefix(station), channel_level(str(j.get("position") or "?")))
            if state is None or where in shown:
                continue
            shown[where] = str(j["run_id"])
            out.extend(self._from_job(where, j, state, now))
        for s in self.runs.summaries(self.newest):
            if not s.get("position"):
                continue
            where = (self.prefix(s.get("station")), channel_level(str(s["position"])))
            if where not in shown:
                shown[where] = s["run_id"]
                out.extend(self._from_dir(where, s))
        for (prefix, channel), run_id in shown.items():
            out.extend(self._events(prefix, channel, run_id))
        return out

    def _from_job(
        self, where: tuple[str, str], j: dict[str, Any], state: str, now: float
    ) -> list[Feed]:
        going = state in ("running", "paused")
        d = {k: j.get(k) for k in ("run_id", "protocol", "cell_id", "step", "cycle",
                                   "voltage_V", "current_A", "temperature_C", "run_time_s",
                                   "eta_s")}  # fmt: skip
        d.update(state=state, updated=now if going else (j.get("ended") or j.get("started")))
        out: list[Feed] = [(*where, "status", d)]
        if state == "running" and isinstance(j.get("run_time_s"), int | float):
            out.append((*where, "telemetry", {
                "run_id": j["run_id"], "wall_time": now, "run_time_s": j["run_time_s"],
                "voltage_V": j.get("voltage_V"), "current_A": j.get("current_A"),
                "temperature_C": j.get("temperature_C"), "cycle": j.get("cycle")}))  # fmt: skip
        return out

    def _from_dir(self, where: tuple[str, str], s: dict[str, Any]) -> list[Feed]:
        root = self.runs.root / s["run_id"]
        updated = _mtime(root / "events.jsonl") or _mtime(root / "run.json")
        state = s.get("state") if s.get("state") in (*_ON_CHANNEL, "pending") else "failed"
        d = {"run_id": s["run_id"], "protocol": s.get("protocol"), "cell_id": s.get("cell_id"),
             "state": state, "cycle": s.get("cycles"), "updated": updated}  # fmt: skip
        return [(*where, "status", d)]

    def _events(self, prefix: str, channel: str, run_id: str) -> list[Feed]:
        """The newest events of a run whose events.jsonl changed (for 'last event')."""
        key = _mtime(self.runs.root / run_id / "events.jsonl")
        if key is None or self._events_key.get(run_id) == key:
            return []
        self._events_key[run_id] = key
        if len(self._events_key) > 4096:
            self._events_key.pop(next(iter(self._events_key)))
        try:
            tail = self.runs.events_tail(run_id, 3)
        except RunNotFound:
            return []
        return [(prefix, channel, "events", e) for e in tail]

    def apply(self, model: LabModel, hub: Hub, feeds: list[Feed]) -> None:
        for prefix, channel, kind, d in feeds:
            if kind == "channel":
                hub.dispatch(model.add_channel(prefix, channel))
                continue
            if kind == "status":
                if self._fed.get((prefix, channel, kind)) == d:
                    continue  # nothing new: no update for the browsers
                self._fed[(prefix, channel, kind)] = d
            hub.dispatch(model.feed(prefix, channel, kind, d))


class LocalSource(BaseSource):
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
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(runs_dir, work_dir, mqtt=mqtt, prefix=prefix,
                         stale_after_s=stale_after_s, cache_dir=cache_dir)  # fmt: skip
        self.daemon = DaemonLink(runs_dir, poll_s=daemon_poll_s)
        base = prefix[:-2] if prefix.endswith("/+") else "labrig"
        self.files = FileRows(self.runs, base) if mqtt is None else None

    def _loops(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [("web-daemon", self._poll_daemon())]

    async def _poll_daemon(self) -> None:
        while True:
            await self.daemon.refresh()
            self.hub.mark_all(self.model.set_waiting(self.daemon.waiting_runs()))
            if self.files is not None:
                info, jobs = dict(self.daemon.info), list(self.daemon.jobs)
                feeds = await asyncio.to_thread(self.files.collect, info, jobs, time.time())
                feeds += await self._daemon_events(info, jobs)
                self.files.apply(self.model, self.hub, feeds)
            going = {str(j["run_id"]) for j in self.daemon.jobs
                     if j.get("state") in ("running", "paused")}  # fmt: skip
            going |= {r.run_id for r in self.model.rows.values()
                      if r.run_id and r.run_state == "running"}  # fmt: skip
            self._warm({r for r in going if (self.runs.root / r).is_dir()})
            await asyncio.sleep(self.daemon.poll_s)

    async def _daemon_events(self, info: dict[str, Any], jobs: list[dict[str, Any]]) -> list[Any]:
        """New events of the daemon's going runs (it keeps the recent ones in memory; the
        run's events.jsonl is written a block at a time)."""
        assert self.files is not None
        out = []
        prefix = self.files.prefix(info.get("station"))
        for j in jobs:
            if j.get("state") not in ("running", "paused"):
                continue
            run_id = str(j["run_id"])
            row = self.model.row_of_run(run_id)
            after = row.last_seq.get(run_id, 0) if row is not None else 0
            try:
                reply = await self.daemon.request({"op": "events", "run": run_id,
                                                   "after_seq": after})  # fmt: skip
            except (DaemonError, DaemonUnavailable):
                break
            channel = channel_level(str(j.get("position") or "?"))
            out += [(prefix, channel, "events", e) for e in reply.get("events", [])
                    if isinstance(e, dict)]  # fmt: skip
        return out

    # -- reading --------------------------------------------------------------------------
    def connections(self) -> dict[str, Any]:
        m = self.mqtt
        return {
            "mqtt": None if m is None else {"connected": m.connected, "url": m.settings.url,
                                            "prefix": m.prefix, "error": m.error},
            "daemon": {
                "available": self.daemon.available,
                "error": self.daemon.error,
                "station": self.daemon.info.get("station"),
                "sim": self.daemon.info.get("sim"),
            },
            "runs_dir": str(self.runs.root),
            "lab": None,
        }  # fmt: skip

    async def run_summaries(self, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.runs.summaries, limit)
        live = {r.run_id: r for r in self.model.rows.values() if r.run_id}
        for s in rows:
            row = live.get(s["run_id"])
            if row is not None and row.run_state:
                s["state"] = row.run_state
                s["cycle"] = row.cycle
        return rows

    async def run_info(self, run_id: str) -> dict[str, Any]:
        """What the run page shows at the top: run.json facts and the live status."""
        meta, live = await self._file_info(run_id)
        job = self.daemon.job(run_id)
        if "created" not in meta and live is None and job is None:
            raise RunNotFound(f"no run {run_id!r} in {self.runs.root}")
        info = run_facts(meta, live)
        state = info["state"]
        if job is not None and job.get("state") not in ("running", "paused"):
            state = state if state in ENDED else job.get("state")
        info.update(state=state, job=job)
        return info

    # -- queue and bookings ---------------------------------------------------------------
    async def queue(self) -> dict[str, Any]:
        if not self.daemon.available:
            await self.daemon.refresh()
        d = self.daemon
        return {
            "source": "daemon",
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
        if job is not None and job.get("state") not in ENDED:
            try:
                reply = await self.daemon.request({"op": command, "run": run_id, "sender": sender})
                return CommandResult(True, str(reply.get("message", "done")), "daemon")
            except DaemonError as exc:
                return CommandResult(False, str(exc), "daemon")
            except DaemonUnavailable:
                pass  # gone meanwhile: try MQTT
        row = self.model.row_of_run(run_id)
        if row is None or self.mqtt is None or row.run_state in (None, *ENDED):
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
        _, text = await load_submission(request)
        try:
            return await self.daemon.request(
                {
                    "op": "submit",
                    "protocol_yaml": text,
                    "source": request.protocol or "web",
                    "position": request.position,
                    "at": request.at,
                    "after": request.after,
                    "seed": 0,
                }
            )
        except DaemonError as exc:
            raise SourceRefused(str(exc)) from None
        except DaemonUnavailable as exc:
            raise SourceUnavailable(str(exc)) from None

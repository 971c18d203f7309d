"""A lab of many PCs: :class:`LabSource` reads the lab database (``labrig web --lab URL``).

What it shows comes from the lab's record (``orchestrator.lab.queries``), read every
``poll_s`` seconds and at once when the database says runs changed (``LISTEN
labrig_runs``):

- **lab page**: every position of every agent, with the run on it (state, step, cycle,
  ETA), ``offline`` when the agent's heartbeat is older than three periods (or it
  stopped), and ``waiting`` while the run waits in line for a shared instrument (its
  booking). With ``--mqtt`` the rows get live readings and events from the agents'
  topics (``labrig/<agent>/<position>/...``); the newer of the two wins, field by field;
- **runs and run pages**: the lab's runs, their mirrored events and per-cycle table; the
  time series, impedance spectra, report and downloads when the run directory is on this
  computer (``--runs``: the web app on an agent's PC or a shared drive), otherwise the
  live readings MQTT brings;
- **queue**: the lab's queue in claim order and every active booking of a shared
  instrument (who holds it since when with which fencing token, who waits);
- **commands and submissions** go through ``labrig_command`` and ``labrig_submit`` as
  ``labrig pause|continue|abort|submit --lab`` do (:mod:`orchestrator.lab.client`).

Roles: a signed-in person may command only when the users file makes them an operator
*and* the lab agrees: the web app's own login must hold the lab's operator role, and a
person who also has a login of that name in the lab database gets the lower of the two
roles (:meth:`LabSource.role_of`). See ``docs/web.md``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ..lab import queries
from ..lab.db import LabUnavailable, connect, redact
from ..mqtt import MqttSettings
from ..mqtt.topics import channel_level
from .auth import User
from .rundata import RunNotFound
from .source import (
    BaseSource,
    CommandResult,
    SourceRefused,
    SourceUnavailable,
    SubmitRequest,
    load_submission,
    merge_events,
    run_facts,
)

__all__ = ["LabSource"]

log = logging.getLogger("labrig.web")
T = TypeVar("T")

#: lab run state -> the run state of a channel row (``queued`` runs are on no channel)
ON_CHANNEL = {"claimed": "pending", "running": "running", "paused": "paused",
              "finished": "finished", "aborted": "aborted", "failed": "failed",
              "stopped": "stopped"}  # fmt: skip
ACTIVE = ("claimed", "running", "paused")
_RANK = {"viewer": 0, "operator": 1, "agent": 2}


class _Db:
    """One synchronous connection, used from worker threads one call at a time, opened
    again after a failure (the error is kept for the page header)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.error: str | None = "not connected yet"
        self._conn: Any = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[Any], T]) -> T:
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.url, app="labrig web")
                out = fn(self._conn)
            except LabUnavailable as exc:
                self._fail(str(exc))
                raise
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._fail(f"lab database {redact(self.url)}: {str(exc).strip().splitlines()[0]}")
                raise LabUnavailable(self.error) from None
            self.error = None
            return out

    def _fail(self, message: str) -> None:
        self.error = message
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close
                log.debug("closing a broken lab connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _snapshot(conn: Any) -> dict[str, Any]:
    cur = conn.execute("SELECT session_user")
    return {
        "positions": queries.list_positions(conn),
        "agents": queries.list_agents(conn),
        "bookings": queries.list_bookings(conn),
        "logins": queries.lab_logins(conn),
        "me": str(cur.fetchone()[0]),
        "at": time.time(),
    }


class LabSource(BaseSource):
    """The lab database (see the module docstring); MQTT optional, for live readings."""

    def __init__(
        self,
        url: str,
        runs_dir: Path,
        work_dir: Path,
        *,
        mqtt: MqttSettings | None,
        prefix: str = "labrig/+",
        stale_after_s: float = 30.0,
        cache_dir: Path | None = None,
        poll_s: float = 2.0,
        command_wait_s: float = 15.0,
    ) -> None:
        super().__init__(runs_dir, work_dir, mqtt=mqtt, prefix=prefix,
                         stale_after_s=stale_after_s, cache_dir=cache_dir)  # fmt: skip
        self.url = url
        self.db = _Db(url)
        self.poll_s = poll_s
        self.command_wait_s = command_wait_s
        self.base = prefix[:-2] if prefix.endswith("/+") else "labrig"
        self.snap: dict[str, Any] = {}
        self._fed: dict[str, dict[str, Any]] = {}

    # -- reading the lab ----------------------------------------------------------------
    def _loops(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        from ..lab.booking import Notifier

        self.notifier = Notifier(self.url, app="labrig web listen")
        return [("web-lab", self._poll()), ("web-lab-listen", self.notifier.run())]

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            await asyncio.to_thread(self.db.close)

    async def _poll(self) -> None:
        while True:
            try:
                self.snap = await asyncio.to_thread(self.db.call, _snapshot)
                self._apply(self.snap)
            except LabUnavailable as exc:
                log.debug("lab database: %s", exc)
            await self.notifier.wait("labrig_runs", self.poll_s)

    def prefix_of(self, agent: str) -> str:
        """The MQTT prefix of an agent: the one whose station message names it, else
        ``<base>/<agent>`` (an agent publishes as station ``<agent>``)."""
        for prefix, info in self.model.stations.items():
            if info.get("station") == agent:
                return prefix
        return f"{self.base}/{channel_level(agent)}"

    def _apply(self, snap: dict[str, Any]) -> None:
        states, notes = {}, {}
        for a in snap["agents"]:
            prefix = self.prefix_of(a["name"])
            states[prefix] = "online" if a["online"] else "offline"
            age = a["heartbeat_age_s"]
            seen = "never" if age is None else f"{age:.0f} s ago"
            why = "stopped" if a["status"] == "stopped" else f"last heartbeat {seen}"
            notes[prefix] = f"agent {a['name']} {a['status']}: {why}"
        self.hub.mark_all(self.model.set_station_override(states, notes))
        for p in snap["positions"]:
            prefix, channel = self.prefix_of(p["agent"]), channel_level(p["position"])
            self.hub.dispatch(self.model.add_channel(prefix, channel))
            status = self._status(p)
            key = f"{prefix}/{channel}"
            if status is None or self._fed.get(key) == status:
                continue
            self._fed[key] = status
            row = self.model.rows[key]
            newer_elsewhere = (row.run_id not in (None, status["run_id"])
                               and row.run_state in ("running", "paused", "pending")
                               and (row.status_time or 0) > (status["updated"] or 0))  # fmt: skip
            if not newer_elsewhere:  # MQTT may already show the run after this one
                self.hub.dispatch(self.model.feed(prefix, channel, "status", status))
        self._alive(snap)
        waiting = {str(b["run_id"]): str(b["resource"]) for b in snap["bookings"]
                   if b["state"] == "waiting"}  # fmt: skip
        self.hub.mark_all(self.model.set_waiting(waiting))
        here = [str(p["run_id"]) for p in snap["positions"] if p["state"] == "running"]
        self._warm({r for r in here if (self.runs.root / r).is_dir()})

    def _alive(self, snap: dict[str, Any]) -> None:
        """A run of an agent that sends heartbeats is not stale, whatever the time of its
        last status in the database (a long step changes nothing for an hour)."""
        changed = []
        for p in snap["positions"]:
            age = p["heartbeat_age_s"]
            if p["agent_online"] and p["state"] in ACTIVE and age is not None:
                key = f"{self.prefix_of(p['agent'])}/{channel_level(p['position'])}"
                if self.model.touch(key, snap["at"] - age):
                    changed.append(key)
        self.hub.mark_all(tuple(changed))

    @staticmethod
    def _status(p: dict[str, Any]) -> dict[str, Any] | None:
        """A position's run record as a status payload (no readings: MQTT brings them)."""
        state = ON_CHANNEL.get(str(p["state"]))
        if p["run_id"] is None or state is None:
            return None
        when = p["status_at"] or p["ended"] or p["started"] or p["claimed"]
        return {"run_id": p["run_id"], "protocol": p["protocol"], "cell_id": p["cell_id"],
                "state": state, "step": p["step"], "cycle": p["cycle"], "eta_s": p["eta_s"],
                "run_time_s": p["run_time_s"], "updated": when}  # fmt: skip

    async def _ask(self, fn: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self.db.call, fn)

    # -- roles ----------------------------------------------------------------------------
    def role_of(self, user: User) -> User:
        """The lower of the users file's role and the lab's: the web app's own login must
        be a lab operator for anybody to command through it, and a person with a lab
        login of the same name keeps that login's role."""
        if user.role != "operator" or not self.snap:
            return user
        me = self.snap["me"]
        mine = self.snap["logins"].get(me)
        if _RANK.get(mine or "", -1) < _RANK["operator"]:
            why = (f"the web app's lab login {me} is a lab {mine}, not an operator" if mine
                   else f"the web app's lab login {me} has no role in this lab")  # fmt: skip
            return User(user.name, "viewer", why)
        theirs = self.snap["logins"].get(user.name)
        if theirs is not None and _RANK[theirs] < _RANK["operator"]:
            return User(user.name, "viewer", f"{user.name} is a {theirs} in the lab database")
        return user

    def connections(self) -> dict[str, Any]:
        m = self.mqtt
        agents = self.snap.get("agents", [])
        return {
            "mqtt": None if m is None else {"connected": m.connected, "url": m.settings.url,
                                            "prefix": m.prefix, "error": m.error},
            "daemon": None,
            "lab": {"connected": self.db.error is None, "url": redact(self.url),
                    "error": self.db.error, "login": self.snap.get("me"),
                    "role": self.snap.get("logins", {}).get(self.snap.get("me")),
                    "agents": len(agents), "online": sum(1 for a in agents if a["online"]),
                    "fetched_at": self.snap.get("at")},
            "runs_dir": str(self.runs.root),
        }  # fmt: skip

    # -- runs -----------------------------------------------------------------------------
    async def run_summaries(self, limit: int) -> list[dict[str, Any]]:
        try:
            rows = await self._ask(lambda c: queries.list_runs(c, limit=limit))
        except LabUnavailable as exc:
            raise SourceUnavailable(str(exc)) from None
        return [{"run_id": r["run_id"], "protocol": r["protocol"], "cell_id": r["cell_id"],
                 "station": r["agent"], "position": r["position"], "state": r["state"],
                 "reason": r["reason"], "created": r["submitted"], "ended": r["ended"],
                 "cycle": r["cycle"], "agent_online": r["agent_online"]} for r in rows]  # fmt: skip

    async def run_info(self, run_id: str) -> dict[str, Any]:
        meta, live = await self._file_info(run_id)
        try:
            found = await self._ask(lambda c: queries.list_runs(c, run_id=run_id))
        except LabUnavailable as exc:
            if "created" not in meta and live is None:
                raise RunNotFound(str(exc)) from None
            found = []
        if not found and "created" not in meta and live is None:
            raise RunNotFound(f"no run {run_id!r} in the lab")
        info = run_facts(meta, live)
        if found:
            r = found[0]
            live_state = (live or {}).get("run_state")
            info.update(state=live_state if live_state in ("running", "paused")
                        and r["state"] in ACTIVE else r["state"],
                        reason=r["reason"], protocol=r["protocol"], station=r["agent"],
                        position=r["position"], created=r["submitted"], ended=r["ended"],
                        lab=r)  # fmt: skip
            info["cell"] = info["cell"] or {"cell_id": r["cell_id"]}
            info["t0"] = info["t0"] or r["started"]
            info["cycles"] = info["cycles"] or r["cycle"]
        return info

    def stored_version(self, run_id: str, what: str) -> str | None:
        """Only a run whose directory is here comes from files (else: the database)."""
        if what != "series" and not self._local(run_id):
            return None
        return super().stored_version(run_id, what)

    def _local(self, run_id: str) -> bool:
        try:
            return (self.runs.path(run_id) / "events.jsonl").is_file()
        except RunNotFound:
            return False

    async def run_events(
        self, run_id: str, after_seq: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        if await asyncio.to_thread(self._local, run_id):
            return await super().run_events(run_id, after_seq, limit)
        try:
            stored = await self._ask(
                lambda c: queries.run_events(c, run_id, after_seq=after_seq, last=limit)
            )
        except LabUnavailable:
            stored = []
        return merge_events(stored, self.live_events(run_id), after_seq, limit)

    async def run_cycles(self, run_id: str) -> list[dict[str, Any]]:
        if await asyncio.to_thread(self._local, run_id):
            return await super().run_cycles(run_id)
        try:
            return await self._ask(lambda c: queries.run_cycles(c, run_id))
        except LabUnavailable as exc:
            raise RunNotFound(str(exc)) from None

    # -- queue and bookings ---------------------------------------------------------------
    async def queue(self) -> dict[str, Any]:
        def read(c: Any) -> tuple[list[dict[str, Any]], ...]:
            return (queries.list_queue(c), queries.list_runs(c, states=["queued", *ACTIVE]),
                    queries.list_runs(c, states=["finished", "aborted", "failed", "stopped"],
                                      limit=50), queries.list_bookings(c))  # fmt: skip

        try:
            queued, going, ended, bookings = await self._ask(read)
        except LabUnavailable as exc:
            return {"source": "lab", "available": False, "error": str(exc), "runs": [],
                    "timeline": [], "fetched_at": None}  # fmt: skip
        place = {q["run_id"]: q["place"] for q in queued}
        rows = [*going, *ended]
        return {
            "source": "lab",
            "available": True,
            "error": None,
            "station": None,
            "runs": [_job(r, place.get(r["run_id"])) for r in rows],
            "timeline": _timeline(bookings),
            "agents": self.snap.get("agents", []),
            "fetched_at": time.time(),
        }

    # -- commands -------------------------------------------------------------------------
    async def command(
        self, user: User, run_id: str, command: str, note: str | None
    ) -> CommandResult:
        """Through ``labrig_command`` as ``labrig pause|continue|abort --lab``: the lab
        records the web app's login as sender; who asked goes in the note (and the
        audit); the agent answers within ``command_wait_s``."""
        from ..lab.client import LabRefused
        from ..lab.client import command as lab_command

        said = f"{user.name} (web)" + (f": {note}" if note else "")

        def send() -> tuple[str, str]:
            return lab_command(self.url, run_id, command, note=said, wait_s=self.command_wait_s)

        try:
            state, reason = await asyncio.to_thread(send)
        except (LabRefused, LabUnavailable) as exc:
            return CommandResult(False, str(exc), "lab")
        return CommandResult(state == "accepted", reason or state, "lab")

    async def submit(self, user: User, request: SubmitRequest) -> dict[str, Any]:
        """Validated here, queued through ``labrig_submit`` (the lab picks the position
        when none is given)."""
        from ..lab.client import LabRefused
        from ..lab.client import submit as lab_submit
        from ..store import new_run_id

        proto, text = await load_submission(request)
        run_id = new_run_id(proto.name, request.cell_id)

        def send() -> Any:
            return lab_submit(self.url, proto, text, run_id=run_id, position=request.position,
                              source=request.protocol or "web", seed=0,
                              not_before=request.at, after=request.after)  # fmt: skip

        try:
            got = await asyncio.to_thread(send)
        except LabRefused as exc:
            raise SourceRefused(str(exc)) from None
        except LabUnavailable as exc:
            raise SourceUnavailable(str(exc)) from None
        return {"ok": True, "run_id": got.run_id, "position": f"{got.agent}/{got.position}",
                "state": got.state}  # fmt: skip


def _job(r: dict[str, Any], place: int | None) -> dict[str, Any]:
    """A lab run as a row of the queue page."""
    return {"run_id": r["run_id"], "position": f"{r['agent']}/{r['position']}",
            "protocol": r["protocol"], "state": r["state"], "reason": r["reason"],
            "submitted": r["submitted"], "submitted_by": r["submitted_by"],
            "not_before": r["not_before"], "after": r["after_run"], "started": r["started"],
            "ended": r["ended"], "cycle": r["cycle"], "step": r["step"], "eta_s": r["eta_s"],
            "place": place, "agent_online": r["agent_online"]}  # fmt: skip


def _timeline(bookings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Active bookings per shared instrument: the holder, then who waits, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for b in bookings:
        slots = out.setdefault(str(b["resource"]), [])
        holding = b["state"] == "holding"
        place = None if holding else sum(1 for s in slots if not s["holding"]) + 1
        slots.append({"run_id": b["run_id"], "holding": holding, "holder": b["holder"],
                      "since": b["granted"] if holding else b["requested"],
                      "token": b["token"], "expires": b["expires"], "expected_s": None,
                      "expected_start": None, "expected_end": None,
                      "place": place})  # fmt: skip
    return [{"resource": k, "slots": v} for k, v in sorted(out.items())]

"""The labrig daemon: a :class:`~orchestrator.scheduler.Scheduler` as a long-lived service.

``Daemon(station=..., runs_dir=..., sim=...).run()`` serves until stopped:

- a control endpoint on a Unix domain socket ``<runs>/labrig.sock`` (file mode 0600 and
  a peer-credential check: only the daemon's own user gets in), JSON lines;
- the queue of runs not started yet in ``<runs>/queue.json`` (rewritten atomically on
  every change), so a restarted daemon starts them as planned;
- on start, run directories whose ``run.json`` says ``running`` or ``paused`` are
  re-attached through ``orchestrator.runner.resume_run`` when that exists; otherwise
  they are listed as ``detached`` and hold their channel until aborted;
- SIGTERM / Ctrl-C once: every run pauses at its next safe point and is marked
  resumable, then the daemon exits; twice: every run to its safe state at once, marked
  aborted with the reason;
- with ``mqtt_url``, one publisher for the whole station (events, status, telemetry,
  and operator commands routed to the run on the commanded channel).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import socket
import struct
from pathlib import Path
from typing import Any

from ..events import Event, EventSink, RunStatus, Telemetry
from ..executor import Executor, RunOptions
from ..scheduler import (
    JobState,
    ResumeFn,
    RunSpec,
    Scheduler,
    SchedulerError,
    WatchdogOptions,
)
from ..station import StationConfig, StationError
from ._wire import OPS, WireError, decode, encode, error, ok, submit_problem
from .client import socket_path

__all__ = ["Daemon", "DaemonStartError"]

log = logging.getLogger("labrig.daemon")

QUEUE_FILE = "queue.json"
_SOCK_PATH_MAX = 100  # sun_path is 108 bytes on Linux


class DaemonStartError(RuntimeError):
    """The daemon cannot start (another one serves the directory, path too long, ...)."""


def _load_resume_fn() -> ResumeFn | None:
    try:
        from ..runner import resume_run  # written alongside the journal work
    except ImportError:
        return None
    return resume_run


class Daemon:
    """See the module docstring. ``ready`` is set once the control socket listens."""

    def __init__(
        self,
        *,
        station: StationConfig,
        runs_dir: Path,
        sim: bool,
        mqtt_url: str | None = None,
        watchdog: WatchdogOptions | None = None,
        run_options: RunOptions | None = None,
        install_signals: bool = True,
        stop_grace_s: float | None = 120.0,
    ) -> None:
        self.stop_grace_s = stop_grace_s
        self.station = station
        self.runs_dir = runs_dir
        self.sim = sim
        self.mqtt_url = mqtt_url
        self.watchdog = watchdog
        self.run_options = run_options
        self.install_signals = install_signals
        self.ready = asyncio.Event()
        self.signals = 0
        self.scheduler: Scheduler | None = None
        self._stop = asyncio.Event()
        self._queue_sig: list[str] | None = None
        self._queue_loaded = False  # queue.json is not rewritten before it was read
        self._publisher: Any = None
        self.recent = RecentEvents()

    # ------------------------------------------------------------------ stopping
    def signal(self, why: str = "SIGTERM") -> None:
        """One stop request: the first stops at safe points, the second at once."""
        self.signals += 1
        sched = self.scheduler
        if sched is None:
            self._stop.set()
            return
        if self.signals == 1:
            log.warning("%s: pausing every run at its next safe point (again: stop at once)", why)
            sched.stop(at_once=False, reason=f"daemon stopped ({why})")
        else:
            log.warning("%s again: every run to its safe state now", why)
            sched.stop(at_once=True, reason=f"daemon stopped ({why} twice)")
        self._stop.set()

    # ------------------------------------------------------------------ main
    async def run(self) -> None:
        """Serve until stopped; returns when every run has been stopped or has ended."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            server = await self._open_control()
            stack.push_async_callback(self._close_control, server)
            sinks: list[EventSink] = [self.recent]
            if self.mqtt_url is not None:
                sinks.append(await self._open_mqtt(stack))
            resume_fn = _load_resume_fn()
            sched = Scheduler(
                station=self.station,
                out_dir=self.runs_dir,
                sim=self.sim,
                sinks=sinks,
                on_executor=self._on_executor,
                watchdog=self.watchdog,
                run_options=self.run_options,
                resume_fn=resume_fn,
                on_change=self._save_queue,
                stop_grace_s=self.stop_grace_s,
            )
            await stack.enter_async_context(sched)
            # read the queue before re-attaching: every change rewrites queue.json
            queued = self._read_queue()
            self.scheduler = sched
            self._reattach(sched, resume_fn is not None)
            self._restore_queue(sched, queued)
            self._queue_loaded = True
            self._save_queue()
            if self.install_signals:
                import pyarrow

                # a Ctrl-C must stop runs at their safe points, not fail a write of theirs
                # with pyarrow's ArrowCancelled
                pyarrow.enable_signal_handlers(False)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.signal, signal.Signals(sig).name)
                    stack.callback(_ignore_from_now_on, loop, sig)
            log.info(
                "labrig daemon: station %s (%d positions%s), control socket %s",
                self.station.name,
                len(self.station.positions),
                ", simulated" if self.sim else "",
                socket_path(self.runs_dir),
            )
            self.ready.set()
            await self._stop.wait()
            await sched.wait_all()
            self.scheduler = None
        log.info("labrig daemon stopped")

    # ------------------------------------------------------------------ control socket
    async def _open_control(self) -> asyncio.AbstractServer:
        path = socket_path(self.runs_dir)
        if len(str(path)) > _SOCK_PATH_MAX:
            raise DaemonStartError(f"control socket path too long for a Unix socket: {path}")
        if path.exists() or path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # left over from a daemon that died
            else:
                raise DaemonStartError(f"another labrig daemon serves {self.runs_dir}")
            finally:
                probe.close()
        # umask makes the socket 0600 from birth: no window in which others can connect
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(
                self._client, path=str(path), limit=16 * 1024 * 1024
            )
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        return server

    async def _close_control(self, server: asyncio.AbstractServer) -> None:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.runs_dir).unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _same_user(writer):
                writer.write(encode(error("permission denied")))
                return
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(encode(error("request too large")))
                    return
                if not line:
                    return
                writer.write(self.answer(line))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()
                await writer.wait_closed()

    def answer(self, line: bytes) -> bytes:
        """The reply to one request line: never an exception, whatever the line holds."""
        try:
            return encode(self.handle(decode(line)))
        except WireError as exc:
            return encode(error(str(exc)))
        except RecursionError:
            return encode(error("request nested too deeply"))
        except Exception as exc:  # a bug of ours must not cost the client its reply
            log.error("request not handled: %s: %s", type(exc).__name__, exc)
            return encode(error(f"request not handled: {type(exc).__name__}: {exc}"))

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (see :mod:`._wire`)."""
        sched = self.scheduler
        op = req.get("op")
        if op not in OPS:
            return error(f"unknown op {op!r} (known: {', '.join(OPS)})")
        if sched is None:
            return error("the daemon is starting (re-attaching its runs); try again in a moment")
        try:
            if op == "ping":
                return ok(
                    station=self.station.name,
                    positions=[p.name for p in self.station.positions],
                    pid=os.getpid(),
                    sim=self.sim,
                    runs_dir=str(self.runs_dir),
                    stopping=sched.closing,
                )
            if op == "submit":
                return self._submit(sched, req)
            if op == "ls":
                now = sched.clock.now()
                return ok(
                    runs=[j.view() for j in sched.jobs()],
                    watchdog_trips=sched.watchdog_trips,
                    timeline=[t.to_dict(now) for t in sched.timeline()],
                )
            if op == "timeline":
                now = sched.clock.now()
                return ok(timeline=[t.to_dict(now) for t in sched.timeline()])
            run_id = req.get("run")
            if not isinstance(run_id, str):
                return error(f"{op} needs a run id")
            if op == "events":
                after = req.get("after_seq", 0)
                if not isinstance(after, int) or isinstance(after, bool):
                    return error("after_seq must be an event number")
                return ok(events=self.recent.since(run_id, after))
            sender = req.get("sender", "local")
            if not (isinstance(sender, str) and 0 < len(sender) <= 200 and sender.isprintable()):
                return error("sender must be a printable name of at most 200 characters")
            return ok(message=sched.command(run_id, op, sender=sender))
        except (SchedulerError, StationError) as exc:
            return error(str(exc))

    def _submit(self, sched: Scheduler, req: dict[str, Any]) -> dict[str, Any]:
        from labrig.protocols.errors import ProtocolError
        from labrig.protocols.loader import load_protocol_text

        text = req.get("protocol_yaml")
        if not isinstance(text, str):
            return error("submit needs protocol_yaml (the protocol's text)")
        source = req.get("source")
        if source is not None and not isinstance(source, str):
            return error("source must be the protocol file's name")
        try:
            proto = load_protocol_text(text, source_name=source or None)
        except ProtocolError as exc:
            return error(str(exc))
        problem = submit_problem(req, now=sched.clock.wall())
        if problem is not None:
            return error(problem)
        at = req.get("at")
        job = sched.submit(
            RunSpec(
                protocol=proto,
                protocol_yaml=text,
                position=req.get("position"),
                not_before=float(at) if at is not None else None,
                after=req.get("after"),
                seed=req.get("seed", 0),
                run_id=req.get("run_id"),
            )
        )
        return ok(run_id=job.run_id, position=job.position, state=job.state.value)

    # ------------------------------------------------------------------ persistence
    def _save_queue(self) -> None:
        sched = self.scheduler
        if sched is None or not self._queue_loaded:
            return
        pending = [
            j
            for j in sched.jobs()
            if j.spec is not None
            and j.executor is None
            and (j.state in (JobState.queued, JobState.waiting) or j.state is JobState.stopped)
        ]
        sig = [j.run_id for j in pending]
        if sig == self._queue_sig:
            return
        self._queue_sig = sig
        rows = []
        for j in pending:
            assert j.spec is not None
            rows.append(
                {
                    "run_id": j.run_id,
                    "position": j.position,
                    "protocol_yaml": j.spec.protocol_yaml,
                    "not_before": j.spec.not_before,
                    "after": j.spec.after,
                    "seed": j.spec.seed,
                }
            )
        path = self.runs_dir / QUEUE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def _read_queue(self) -> list[Any]:
        path = self.runs_dir / QUEUE_FILE
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("%s unreadable (%s); queued runs not restored", path, exc)
            return []
        return rows if isinstance(rows, list) else []

    def _restore_queue(self, sched: Scheduler, rows: list[Any]) -> None:
        from labrig.protocols.errors import ProtocolError
        from labrig.protocols.loader import load_protocol_text

        for row in rows:
            try:
                if (self.runs_dir / row["run_id"]).exists():
                    continue  # it had started: re-attached above, if at all
                proto = load_protocol_text(row["protocol_yaml"])
                sched.submit(
                    RunSpec(
                        protocol=proto,
                        protocol_yaml=row["protocol_yaml"],
                        position=row["position"],
                        not_before=row.get("not_before"),
                        after=row.get("after"),
                        seed=int(row.get("seed", 0)),
                        run_id=row["run_id"],
                    )
                )
                log.info("queued run %s restored", row["run_id"])
            except (KeyError, TypeError, ProtocolError, SchedulerError, StationError) as exc:
                log.error("queued run %r not restored: %s", row, exc)

    def _reattach(self, sched: Scheduler, can_resume: bool) -> None:
        found: list[Path] = []
        for meta_path in sorted(self.runs_dir.glob("*/run.json")):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if meta.get("state") in ("running", "paused"):
                found.append(meta_path.parent)
        if found and not can_resume:
            log.warning(
                "resume is unavailable (orchestrator.runner.resume_run is missing): %d "
                "unfinished run(s) left alone and shown as detached: %s",
                len(found),
                ", ".join(p.name for p in found),
            )
        for run_dir in found:
            try:
                sched.reattach(run_dir)
            except (OSError, ValueError) as exc:
                log.error("cannot re-attach %s: %s", run_dir.name, exc)

    # ------------------------------------------------------------------ MQTT
    async def _open_mqtt(self, stack: contextlib.AsyncExitStack) -> Any:
        from ..mqtt import MqttPublisher, MqttSettings, Outbox, station_description

        settings = MqttSettings.from_env(url=self.mqtt_url, station=self.station.name)
        outbox = Outbox(self.runs_dir / "outbox.sqlite")
        stack.callback(outbox.close)
        pub = await stack.enter_async_context(
            MqttPublisher(
                settings,
                outbox=outbox,
                description=station_description(self.station, settings.station),
                channels=[p.name for p in self.station.positions],
                command_handler=self._mqtt_command,
                command_audit=self._mqtt_audit,
            )
        )
        self._publisher = pub
        return pub

    async def _mqtt_command(self, channel: str, command: str, sender: str) -> tuple[bool, str]:
        sched = self.scheduler
        job = sched.active_on(channel) if sched is not None else None
        if sched is None or job is None:
            return False, f"no run on channel {channel!r}"
        try:
            return True, sched.command(job.run_id, command, f"{sender} (MQTT)", record=False)
        except SchedulerError as exc:
            return False, str(exc)

    def _mqtt_audit(self, rec: Any) -> None:
        sched = self.scheduler
        job = sched.active_on(rec.channel) if sched is not None else None
        if job is not None and job.executor is not None:
            from ..events import EventKind

            job.executor.record(EventKind.command, **rec.event_data())

    def _on_executor(self, ex: Executor) -> None:
        return None


class RecentEvents:
    """An EventSink keeping each run's latest events in memory for ``labrig logs``.

    The run's ``events.jsonl`` is flushed at block ends; this shows what happened since.
    """

    def __init__(self, per_run: int = 2000) -> None:
        self.per_run = per_run
        self._events: dict[str, collections.deque[Event]] = {}

    def publish_event(self, event: Event) -> None:
        q = self._events.get(event.run_id)
        if q is None:
            q = self._events[event.run_id] = collections.deque(maxlen=self.per_run)
        q.append(event)

    def publish_status(self, status: RunStatus) -> None:
        return None

    def publish_telemetry(self, telemetry: Telemetry) -> None:
        return None

    def since(self, run_id: str, after_seq: int) -> list[dict[str, Any]]:
        return [json.loads(e.to_json()) for e in self._events.get(run_id, ()) if e.seq > after_seq]


def _ignore_from_now_on(loop: asyncio.AbstractEventLoop, sig: int) -> None:
    """Once stopped, a late second signal must not kill the exiting process half-way."""
    loop.remove_signal_handler(sig)
    signal.signal(sig, signal.SIG_IGN)


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """Linux peer credentials: the connecting process must run as our user."""
    sock = writer.get_extra_info("socket")
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return True  # the 0600 socket file is the guard on systems without it
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())

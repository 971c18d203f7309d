"""``labrig agent``: one per instrument PC, one lab through PostgreSQL.

The agent runs the runs of its positions with the ordinary scheduler (local journal,
run directories, resume, watchdog, stop semantics of ``labrig serve``), fed from the
lab's queue instead of a control socket:

- it registers itself, its instruments and positions, and sends heartbeats;
- it claims the first queued run of each idle position (``FOR UPDATE SKIP LOCKED``,
  woken by ``LISTEN/NOTIFY``) and remembers claimed runs locally, so a restart without
  the database still starts them;
- it obeys ``pause|continue|abort`` commands written by operators to the database;
- it mirrors run states, events and cycles through the durable outbox (:mod:`.mirror`);
- it serves its shared instruments to other agents (:mod:`.api`) and reaches theirs
  through remote proxies (:mod:`.remote`).

A lost database changes nothing in the runs already taken: they are controlled by the
local journal; claims, commands and the mirror resume when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..events import EventSink
from ..executor import Executor, RunOptions
from ..run.bindings import RunBindings
from ..scheduler import JobState, RunSpec, Scheduler, SchedulerError, WatchdogOptions
from ..station import Position
from . import registry
from .booking import Fences, Leases, Notifier
from .config import AgentConfig
from .db import AsyncLink, LabUnavailable, dbname, redact
from .mirror import Mirror
from .schema import role_names

__all__ = ["LabAgent"]

log = logging.getLogger("labrig.lab.agent")

QUEUE_FILE = "lab-queue.json"
VERSION = "1"


class LabAgent:
    """See the module docstring. ``await LabAgent(...).run()`` serves until stopped."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        lab_url: str,
        runs_dir: Path,
        sim: bool = False,
        mqtt_url: str | None = None,
        certs: Path | None = None,
        secret: str | None = None,
        run_options: RunOptions | None = None,
        watchdog: WatchdogOptions | None = None,
        install_signals: bool = True,
        stop_grace_s: float | None = 120.0,
        sim_log: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.sim_log = sim_log  # --sim: where simulated shared instruments log commands
        self.lab_url = lab_url
        self.runs_dir = runs_dir
        self.sim = sim
        self.mqtt_url = mqtt_url
        self.certs = certs
        self.secret = secret
        self.run_options = run_options
        self.watchdog = watchdog
        self.install_signals = install_signals
        self.stop_grace_s = stop_grace_s
        self.operator_role = role_names(dbname(lab_url))["operator"]
        self.scheduler: Scheduler | None = None
        self.mirror: Mirror | None = None
        self.hub: Any = None
        self.api_url: str | None = None
        self.registered = asyncio.Event()
        self.ready = asyncio.Event()
        self.signals = 0
        self._stop = asyncio.Event()
        self._wake_claims = asyncio.Event()
        self._finalized: set[str] = set()
        self._queue_sig: list[str] | None = None
        self._links: list[AsyncLink] = []
        self.db_down = False

    # ------------------------------------------------------------------ stopping
    def signal(self, why: str = "SIGTERM") -> None:
        """One stop request: the first stops at safe points, the second at once."""
        self.signals += 1
        sched = self.scheduler
        if sched is not None:
            if self.signals == 1:
                log.warning("%s: pausing every run at its next safe point", why)
                sched.stop(at_once=False, reason=f"agent stopped ({why})")
            else:
                log.warning("%s again: every run to its safe state now", why)
                sched.stop(at_once=True, reason=f"agent stopped ({why} twice)")
        self._stop.set()

    def _link(self, app: str) -> AsyncLink:
        link = AsyncLink(self.lab_url, app=f"labrig-agent {self.cfg.name} {app}")
        self._links.append(link)
        return link

    # ------------------------------------------------------------------ main
    async def run(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        notifier = Notifier(self.lab_url, app=f"labrig-agent {self.cfg.name} listen")
        control = self._link("control")
        async with contextlib.AsyncExitStack() as stack:
            for link in (control,):
                stack.push_async_callback(link.aclose)
            self.mirror = Mirror(self.runs_dir / "lab-outbox.sqlite")
            stack.callback(self.mirror.close)
            tasks = await stack.enter_async_context(_Tasks(self.signal))
            tasks.start(notifier.run(), "listen")
            await self._open_shared(stack, notifier)
            sinks: list[EventSink] = [self.mirror]
            if self.mqtt_url is not None:
                sinks.append(await self._open_mqtt(stack))
            if self.cfg.station is not None:
                await self._open_scheduler(stack, sinks)
            tasks.start(self._heartbeats(control), "heartbeat")
            tasks.start(self._drain(self._link("mirror")), "mirror")
            if self.scheduler is not None:
                tasks.start(self._claims(control, notifier), "claims")
                tasks.start(self._commands(control, notifier), "commands")
            if self.install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.signal, signal.Signals(sig).name)
                    stack.callback(loop.remove_signal_handler, sig)
            log.info("labrig agent %s: lab %s, %d positions, runs in %s", self.cfg.name,
                     redact(self.lab_url), len(self.cfg.positions), self.runs_dir)  # fmt: skip
            self.ready.set()
            await self._stop.wait()
            if self.scheduler is not None:
                await self.scheduler.wait_all()
            await self._goodbye(control)
        for link in self._links:
            await link.aclose()
        log.info("labrig agent %s stopped", self.cfg.name)

    async def _goodbye(self, control: AsyncLink) -> None:
        """Last drain of the mirror and sign-off, each under a deadline."""
        assert self.mirror is not None
        drain = self._link("final")
        with contextlib.suppress(LabUnavailable, TimeoutError):
            async with asyncio.timeout(10.0):
                await self.mirror.drain(drain)
        with contextlib.suppress(LabUnavailable):
            await control.call(lambda c: registry.signed_off(c, self.cfg.name), deadline_s=5.0)

    # ------------------------------------------------------------------ pieces
    async def _open_scheduler(self, stack: contextlib.AsyncExitStack, sinks: list[Any]) -> None:
        from .. import runner

        assert self.cfg.station is not None
        sched = Scheduler(
            station=self.cfg.station,
            out_dir=self.runs_dir,
            sim=self.sim,
            sinks=sinks,
            on_executor=self._on_executor,
            adapter=self._adapt,
            watchdog=self.watchdog,
            run_options=self.run_options,
            resume_fn=runner.resume_run,
            on_change=self._on_change,
            stop_grace_s=self.stop_grace_s,
        )
        await stack.enter_async_context(sched)
        self.scheduler = sched
        self._reattach(sched)
        self._restore_queue(sched)

    async def _open_shared(self, stack: contextlib.AsyncExitStack, notifier: Notifier) -> None:
        """Serve our shared instruments; prepare to reach other agents' ones."""
        from .security import mint_token

        shared = self.cfg.shared_instruments()
        needs_remote = self.cfg.needs_remote()
        if not shared and not needs_remote:
            return
        if self.secret is None:
            raise LabUnavailable(
                "lab mode with shared instruments needs the lab secret "
                "($LABRIG_LAB_SECRET or <certs>/lab.secret, mode 0600)"
            )
        from .api import TlsFiles, client_ssl_context

        tls = TlsFiles(self.certs, self.cfg.name) if self.certs is not None else None
        if shared:
            await self._serve_shared(stack, shared, tls)
        if needs_remote:
            from ..instruments.hw.remote import CONNECTOR
            from .remote import HubConnector, RemoteHub

            link = self._link("leases")
            leases = Leases(link, notifier, agent=self.cfg.name, lease_s=self.cfg.lab.lease_s)
            self.hub = RemoteHub(
                agent=self.cfg.name, link=link, leases=leases,
                token=mint_token(self.secret, self.cfg.name, "agent"),
                ssl=client_ssl_context(tls), owner_wait_s=self.cfg.lab.owner_wait_s,
            )  # fmt: skip
            stack.push_async_callback(self.hub.aclose)
            # ``driver: remote`` instruments open as this hub's proxies in our runs
            CONNECTOR.set(HubConnector(self.hub))

    async def _serve_shared(
        self, stack: contextlib.AsyncExitStack, shared: dict[str, Any], tls: Any
    ) -> None:
        from .api import make_app, serve_api
        from .service import SharedInstruments, open_shared_instrument

        assert self.secret is not None
        service = SharedInstruments(self.cfg.name, Fences(self._link("fences")),
                                    check_s=min(1.0, self.cfg.lab.lease_s / 4))  # fmt: skip
        for name, inst in shared.items():
            cmds = str(self.sim_log / f"{name}.jsonl") if self.sim_log is not None else None
            kind, objs = await open_shared_instrument(stack, name, inst, sim=self.sim,
                                                      command_log=cmds)  # fmt: skip
            service.add(name, inst.driver, kind, objs)
        stack.push_async_callback(service.safe_all)
        api = self.cfg.lab.api
        port = await stack.enter_async_context(
            serve_api(make_app(service, self.secret, agent=self.cfg.name), host=api.host,
                      port=api.port, tls=tls, client_certs=api.client_certs)
        )  # fmt: skip
        scheme = "https" if tls is not None else "http"
        self.api_url = api.url or f"{scheme}://{api.host}:{port}"
        log.info("shared instruments %s served at %s", ", ".join(shared), self.api_url)

    async def _open_mqtt(self, stack: contextlib.AsyncExitStack) -> Any:
        from ..mqtt import MqttPublisher, MqttSettings, Outbox, station_description

        settings = MqttSettings.from_env(url=self.mqtt_url, station=self.cfg.name)
        outbox = Outbox(self.runs_dir / "outbox.sqlite")
        stack.callback(outbox.close)
        st = self.cfg.station
        pub = await stack.enter_async_context(
            MqttPublisher(
                settings,
                outbox=outbox,
                description=station_description(st, settings.station) if st else None,
                channels=[p.name for p in st.positions] if st else [],
                command_handler=self._mqtt_command,
            )
        )
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

    # ------------------------------------------------------------------ runs
    def _adapt(self, b: RunBindings, position: Position) -> RunBindings:
        links = self.cfg.links.get(position.name)
        if self.hub is None or self.scheduler is None:
            return b
        from .remote import RemoteChamber, RemoteImpedance, bind_run

        run_id = self.scheduler.queue(position.name)[0].run_id
        bind_run(b.impedance, run_id)
        bind_run(b.chamber, run_id)
        if not links:
            return b
        upd: dict[str, Any] = {}
        if "impedance" in links:
            upd["impedance"] = RemoteImpedance(self.hub, links["impedance"], run_id)
        if "chamber" in links:
            upd["chamber"] = RemoteChamber(self.hub, links["chamber"], run_id)
        return replace(b, **upd)

    def _on_executor(self, ex: Executor) -> None:
        if self.hub is not None:
            self.hub.attach(ex)
        if self.mirror is not None and (self.runs_dir / ex.run_id).is_dir():
            # a resumed run: what its journal held before the stop, mirrored again
            self.mirror.backfill(self.runs_dir / ex.run_id)

    def _on_change(self) -> None:
        sched = self.scheduler
        if sched is None or self.mirror is None:
            return
        for job in sched.jobs():
            if job.ended_state and job.run_id not in self._finalized:
                self._finalized.add(job.run_id)
                last = self.mirror.backfill(job.run_dir) if job.run_dir is not None else 0
                self.mirror.final(job.run_id, job.state.value, job.reason, last or None)
                if self.hub is not None:
                    self.hub.detach(job.run_id)
                self._wake_claims.set()
        self._save_queue(sched)

    def _submit(self, sched: Scheduler, c: registry.Claimed) -> None:
        from labrig.protocols.errors import ProtocolError
        from labrig.protocols.loader import load_protocol_text

        try:
            proto = load_protocol_text(c.protocol_yaml, source_name=c.source or None)
            sched.submit(RunSpec(protocol=proto, protocol_yaml=c.protocol_yaml,
                                 position=c.position, not_before=c.not_before, seed=c.seed,
                                 run_id=c.run_id))  # fmt: skip
        except (ProtocolError, SchedulerError, ValueError) as exc:
            log.error("run %s cannot start here: %s", c.run_id, exc)
            assert self.mirror is not None
            self._finalized.add(c.run_id)
            self.mirror.final(c.run_id, "failed", f"not started on {self.cfg.name}: {exc}")

    def _save_queue(self, sched: Scheduler) -> None:
        rows = [
            {"run_id": j.run_id, "position": j.position, "protocol_yaml": j.spec.protocol_yaml,
             "source": None, "seed": j.spec.seed, "not_before": j.spec.not_before}
            for j in sched.jobs()
            if j.spec is not None and j.executor is None
            and j.state in (JobState.queued, JobState.waiting, JobState.stopped)
        ]  # fmt: skip
        sig = [j["run_id"] for j in rows if isinstance(j["run_id"], str)]
        if sig == self._queue_sig:
            return
        self._queue_sig = sig
        path = self.runs_dir / QUEUE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def _restore_queue(self, sched: Scheduler) -> None:
        try:
            rows = json.loads((self.runs_dir / QUEUE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        for r in rows if isinstance(rows, list) else []:
            if isinstance(r, dict) and not (self.runs_dir / str(r.get("run_id"))).exists():
                with contextlib.suppress(KeyError, TypeError):
                    self._submit(sched, registry.Claimed(**r))

    def _reattach(self, sched: Scheduler) -> None:
        for meta_path in sorted(self.runs_dir.glob("*/run.json")):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if meta.get("state") in ("running", "paused"):
                try:
                    sched.reattach(meta_path.parent)
                except (OSError, ValueError) as exc:
                    log.error("cannot re-attach %s: %s", meta_path.parent.name, exc)

    def _known(self, run_id: str) -> bool:
        sched = self.scheduler
        return sched is not None and any(j.run_id == run_id for j in sched.jobs())

    async def _reconcile(self, control: AsyncLink) -> None:
        """Runs the database gave us that this agent does not know (claimed just before
        a crash that lost the local queue file): start them; mirror what ended."""
        sched = self.scheduler
        if sched is None or self.mirror is None:
            return
        rows = await control.call(lambda c: registry.unfinished_runs(c, self.cfg.name))
        for run_id, pos, state, yaml_text, source, seed, nb in rows:
            if self._known(run_id):
                continue
            run_dir = self.runs_dir / run_id
            if (run_dir / "run.json").exists():
                last = self.mirror.backfill(run_dir)
                meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
                if meta.get("state") in ("finished", "aborted", "failed"):
                    self.mirror.final(run_id, meta["state"], meta.get("reason"), last or None)
            elif state == "claimed":
                self._submit(
                    sched,
                    registry.Claimed(
                        run_id, pos, yaml_text, source, seed, float(nb) if nb is not None else None
                    ),
                )

    # ------------------------------------------------------------------ loops
    async def _heartbeats(self, control: AsyncLink) -> None:
        beat = self.cfg.lab.heartbeat_s
        registered = False
        while True:
            try:
                if not registered:
                    await control.call(lambda c: registry.register(
                        c, self.cfg, api_url=self.api_url, version=VERSION))  # fmt: skip
                    registered = True
                    await self._reconcile(control)
                    self.registered.set()
                    self._wake_claims.set()
                elif not await control.call(lambda c: registry.heartbeat(c, self.cfg.name)):
                    registered = False
                    continue
                if self.db_down:
                    log.warning("lab database back")
                self.db_down = False
            except LabUnavailable as exc:
                if not self.db_down:
                    log.warning("lab database unreachable (%s); runs go on", exc)
                self.db_down = True
            await asyncio.sleep(beat)

    async def _claims(self, control: AsyncLink, notifier: Notifier) -> None:
        sched = self.scheduler
        assert sched is not None and self.cfg.station is not None
        await self.registered.wait()
        names = [p.name for p in self.cfg.station.positions]
        while True:
            self._wake_claims.clear()
            idle = [p for p in names if not sched.queue(p)]
            if idle and not sched.closing:
                try:
                    got = await control.call(
                        lambda c, i=idle: registry.claim_runs(c, self.cfg.name, i)
                    )
                except LabUnavailable:
                    got = []
                for c in got:
                    self._submit(sched, c)
            wake = asyncio.create_task(self._wake_claims.wait())
            note = asyncio.create_task(notifier.wait("labrig_queue", 2.0))
            try:
                await asyncio.wait({wake, note}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (wake, note):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t

    async def _commands(self, control: AsyncLink, notifier: Notifier) -> None:
        sched = self.scheduler
        assert sched is not None
        await self.registered.wait()
        while True:
            try:
                rows = await control.call(
                    lambda c: registry.pending_commands(c, self.cfg.name, self.operator_role)
                )
                for cid, run_id, op, sender, expired, allowed in rows:
                    state, reason = self._command(sched, run_id, op, sender, expired, allowed)
                    log.info("lab command %s %s from %s: %s (%s)", op, run_id, sender, state,
                             reason)  # fmt: skip
                    await control.call(
                        lambda c, a=(cid, state, reason): registry.set_command(c, *a)
                    )
            except LabUnavailable:
                pass
            await notifier.wait("labrig_cmd", 2.0)

    def _command(
        self, sched: Scheduler, run_id: str, op: str, sender: str, expired: bool, allowed: bool
    ) -> tuple[str, str]:
        if expired:
            return "expired", "not taken in time"
        if not allowed:
            return "refused", f"{sender} is not an operator of this lab"
        try:
            return "accepted", sched.command(run_id, op, sender=f"{sender} (lab)")
        except SchedulerError as exc:
            return "refused", str(exc)

    async def _drain(self, link: AsyncLink) -> None:
        assert self.mirror is not None
        backoff = 0.1
        while True:
            try:
                await self.mirror.drain(link)
                backoff = 0.1
                await asyncio.sleep(0.2)
            except LabUnavailable as exc:
                self.mirror.failures += 1
                log.debug("mirror waits for the lab database: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)


class _Tasks:
    """Background loops owned by an ``async with``: cancelled and awaited at its end; a
    loop that dies is logged and stops the agent rather than leaving it half-alive."""

    def __init__(self, stop: Any) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = stop

    def start(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"labrig agent {name}")
        task.add_done_callback(self._report)
        self._tasks.append(task)

    def _report(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s died: %r", task.get_name(), task.exception())
            self._stop(f"{task.get_name()} died")

    async def __aenter__(self) -> _Tasks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

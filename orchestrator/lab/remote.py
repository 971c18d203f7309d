"""Instruments of other agents, behind the capability protocols of ``drivers.capabilities``.

:class:`RemoteImpedance` is an ``ImpedanceChannel``, :class:`RemoteChamber` a
``ChamberController`` and :class:`RemoteCycler` a ``CyclerChannel``: the executor cannot
tell them from local ones. Each command is sent to the owning agent's API with the
fencing token of a lab-wide lease (:mod:`.booking`) and a deadline.

While a command runs, the lease is renewed and the owner watched (its heartbeat in the
lab database, and the connection itself). When the owner is lost mid-EIS, the sweep
follows the EIS step's declared ``on_interrupt``: ``repeat`` (the cycler stays at rest,
the run waits for the owner to come back, books again and measures again), ``skip``
(an empty spectrum, and a ``notify`` event saying why) or ``abort`` (the run aborts at
its next safe point). The lease of the interrupted sweep is ended at once, or expires.
Tries of a sweep are spaced by :data:`EIS_RETRY` (an owner restarting, still online in
the lab database but not answering yet, is tried a few times, not in a tight loop) and
given up after ``owner_wait_s`` with an ``InstrumentError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelStatus,
    ChannelStep,
    EisRequest,
    EisResult,
    InstrumentError,
    InstrumentTimeout,
    RecordBatch,
)
from labrig.drivers.retry import Backoff, Retry

from .booking import Lease, LeaseLost, Leases
from .config import RemoteRef
from .db import AsyncLink, LabUnavailable
from .wire import decode_result, encode_args

__all__ = [
    "EIS_RETRY",
    "HubConnector",
    "OwnerLost",
    "RemoteChamber",
    "RemoteCycler",
    "RemoteHub",
    "RemoteImpedance",
    "bind_run",
]

log = logging.getLogger("labrig.lab.remote")

CALL_DEADLINE_S = 15.0
#: waits between tries of an interrupted sweep (policy ``repeat``): 0.5, 1, 2 ... 10 s,
#: each stretched by up to half (agents that lost one owner do not come back in step)
EIS_RETRY = Backoff(first_s=0.5, factor=2.0, max_s=10.0, jitter=0.5)
_STRICTNESS = {"skip": 0, "repeat": 1, "abort": 2}


class OwnerLost(InstrumentError):
    """The agent owning the instrument went away (or stopped answering) during a call."""


class _Interrupted(Exception):
    """A try of a sweep was interrupted and its policy is ``repeat`` (the message: why)."""


def eis_key(req: EisRequest) -> tuple[Any, ...]:
    freqs = tuple(round(f, 9) for f in req.frequencies_Hz)
    return (freqs, req.amplitude_V, req.amplitude_A, req.bias, req.bias_V, req.bias_A)


def eis_policies(protocol: Any) -> dict[tuple[Any, ...], str]:
    """EIS request -> its step's ``on_interrupt`` (the strictest when several agree)."""
    from labrig.protocols.models import EisStep

    out: dict[tuple[Any, ...], str] = {}
    for s in protocol.steps():
        if not isinstance(s, EisStep):
            continue
        req = EisRequest(tuple(s.frequencies_Hz()), s.amplitude_V, s.amplitude_A, s.bias,
                         s.bias_V, s.bias_A)  # fmt: skip
        key = eis_key(req)
        old = out.get(key)
        if old is None or _STRICTNESS[s.on_interrupt] > _STRICTNESS[old]:
            out[key] = s.on_interrupt
    return out


def sweep_s(req: EisRequest) -> float:
    """Expected real duration of a sweep (about three periods a point, at least 0.1 s)."""
    return float(sum(max(3.0 / f, 0.1) for f in req.frequencies_Hz if f > 0))


def empty_spectrum() -> EisResult:
    e = np.empty(0, dtype=np.float64)
    return EisResult(e, e.copy(), e.copy(), math.nan, 0.0)


class RemoteHub:
    """What every remote proxy of one agent shares: the API clients, the owners'
    addresses and liveness (from the lab database), the leases, and the runs' executors
    (to record what happened to their sweeps)."""

    def __init__(
        self,
        *,
        agent: str,
        link: AsyncLink,
        leases: Leases,
        token: str,
        ssl: Any,
        owner_wait_s: float,
        retry: Backoff = EIS_RETRY,
    ) -> None:
        self.agent = agent
        self.link = link
        self.leases = leases
        self.token = token
        self.ssl = ssl
        self.owner_wait_s = owner_wait_s
        self.retry = retry
        self._clients: dict[str, Any] = {}
        self._urls: dict[str, str] = {}
        self.executors: dict[str, Any] = {}
        self.policies: dict[str, dict[tuple[Any, ...], str]] = {}
        self.interruptions = 0

    async def aclose(self) -> None:
        for c in self._clients.values():
            with contextlib.suppress(Exception):
                await c.aclose()
        self._clients.clear()

    # ------------------------------------------------------------------ runs
    def attach(self, ex: Any) -> None:
        self.executors[ex.run_id] = ex
        self.policies[ex.run_id] = eis_policies(ex.protocol)

    def detach(self, run_id: str) -> None:
        self.executors.pop(run_id, None)
        self.policies.pop(run_id, None)

    def record(self, run_id: str, kind: str, **data: Any) -> None:
        from ..events import EventKind

        ex = self.executors.get(run_id)
        if ex is not None:
            ex.record(EventKind(kind), **data)

    def wait_recorder(self, run_id: str) -> Callable[[str, float], None]:
        def on_wait(resource: str, seconds: float) -> None:
            self.record(run_id, "wait", resource=resource, seconds=seconds, scope="lab")

        return on_wait

    # ------------------------------------------------------------------ owners
    async def owner_state(self, agent: str) -> tuple[bool, str | None]:
        """(online, API URL) of ``agent`` from its registration and heartbeat."""

        async def q(conn: Any) -> Any:
            cur = await conn.execute(
                "SELECT state = 'online' AND heartbeat_at > clock_timestamp() - "
                "make_interval(secs => heartbeat_s * 3), api_url FROM agents WHERE name = %s",
                (agent,),
            )
            return await cur.fetchone()

        row = await self.link.call(q, deadline_s=5.0)
        if row is None:
            return False, None
        if row[1]:
            self._urls[agent] = str(row[1])
        return bool(row[0]), row[1]

    async def wait_owner(self, agent: str, why: str) -> None:
        """Until ``agent`` is online; InstrumentError after ``owner_wait_s``."""
        deadline = time.monotonic() + self.owner_wait_s
        said = False
        while True:
            try:
                online, _ = await self.owner_state(agent)
            except LabUnavailable:
                online = False
            if online:
                return
            if not said:
                log.warning("%s: waiting for agent %s to come back", why, agent)
                said = True
            if time.monotonic() > deadline:
                raise InstrumentError(
                    f"{why}: agent {agent} has been offline for {self.owner_wait_s:.0f} s"
                )
            await asyncio.sleep(0.5)

    async def watch_owner(self, agent: str, every_s: float) -> str:
        """Returns (a reason) once ``agent`` is seen offline."""
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(LabUnavailable):
                online, _ = await self.owner_state(agent)
                if not online:
                    return f"agent {agent} is offline (no heartbeat)"

    def _client(self, agent: str) -> Any:
        import httpx

        c = self._clients.get(agent)
        if c is None:
            c = httpx.AsyncClient(
                verify=self.ssl,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx.Timeout(CALL_DEADLINE_S),
            )
            self._clients[agent] = c
        return c

    async def post(
        self, ref: RemoteRef, method: str, body: dict[str, Any], deadline_s: float
    ) -> Any:
        """One API call; maps transport failures to :class:`OwnerLost`."""
        import httpx

        url = self._urls.get(ref.agent)
        if url is None:
            with contextlib.suppress(LabUnavailable):
                await self.owner_state(ref.agent)
            url = self._urls.get(ref.agent)
        if url is None:
            raise OwnerLost(f"agent {ref.agent} has no API address in the lab database")
        path = f"{url}/v1/instruments/{ref.instrument}/{ref.channel}/{method}"
        try:
            async with asyncio.timeout(deadline_s):
                r = await self._client(ref.agent).post(
                    path, json=body, timeout=httpx.Timeout(deadline_s + 5.0)
                )
        except TimeoutError:
            raise OwnerLost(
                f"{ref.resource}: no answer to {method} within {deadline_s:.0f} s"
            ) from None
        except httpx.HTTPError as exc:
            raise OwnerLost(f"{ref.resource}: {method}: {type(exc).__name__}: {exc}") from None
        if r.status_code == 200:
            return r.json()["result"]
        detail = _detail(r)
        if r.status_code == 409:
            raise LeaseLost(f"{ref.resource}: {detail}")
        if r.status_code == 502:
            d = r.json().get("detail") or {}
            message = f"{ref.resource}: {d.get('message', detail)}"
            if d.get("error") == "ValueError":
                raise ValueError(message)  # the owner refused the arguments, as locally
            cls = InstrumentTimeout if d.get("error") == "InstrumentTimeout" else InstrumentError
            raise cls(message)
        raise InstrumentError(f"{ref.resource}: {method} refused ({r.status_code}): {detail}")


def _detail(r: Any) -> str:
    try:
        return str(r.json().get("detail"))
    except ValueError:
        return str(r.text)[:200]


class _Remote:
    kind = ""

    def __init__(self, hub: RemoteHub, ref: RemoteRef, run_id: str) -> None:
        self.hub = hub
        self.ref = ref
        self.run_id = run_id
        self.lease: Lease | None = None

    @property
    def name(self) -> str:
        return self.ref.resource

    async def _leased(self, lease: Lease, method: str, deadline_s: float, **kwargs: Any) -> Any:
        """``method`` under ``lease``, abandoned when the lease or the owner is lost."""
        body = {"token": lease.token, "run_id": self.run_id, "args": encode_args(**kwargs)}
        call = asyncio.create_task(self.hub.post(self.ref, method, body, deadline_s))
        lost = asyncio.create_task(lease.lost.wait())
        owner = asyncio.create_task(self.hub.watch_owner(self.ref.agent, 2.0))
        try:
            await asyncio.wait({call, lost, owner}, return_when=asyncio.FIRST_COMPLETED)
            if call.done():
                return decode_result(self.kind, method, call.result())
            if lost.done():
                raise LeaseLost(f"{self.name}: {lease.reason}")
            raise OwnerLost(f"{self.name}: {owner.result()}")
        finally:
            for t in (call, lost, owner):
                t.cancel()
            for t in (call, lost, owner):
                with contextlib.suppress(BaseException):
                    await t

    async def _once(self, method: str, deadline_s: float = CALL_DEADLINE_S, **kwargs: Any) -> Any:
        """One call under a lease of its own (or the one this proxy holds)."""
        if self.lease is not None and not self.lease.lost.is_set():
            return await self._leased(self.lease, method, deadline_s, **kwargs)
        await self.hub.wait_owner(self.ref.agent, f"{self.name} {method}")
        async with self.hub.leases.hold(self.name, self.run_id) as lease:
            return await self._leased(lease, method, deadline_s, **kwargs)


class RemoteImpedance(_Remote):
    """An ``ImpedanceChannel`` on another agent (one lease per measurement)."""

    kind = "impedance"

    async def measure_eis(self, request: EisRequest) -> EisResult:
        policy = self.hub.policies.get(self.run_id, {}).get(eis_key(request), "repeat")
        deadline = 60.0 + 3.0 * sweep_s(request)

        def again(exc: BaseException, tries: int, wait_s: float) -> None:
            self._interrupted(str(exc), policy, f"try {tries + 1} in {wait_s:.1f} s")

        retry = Retry(on=_Interrupted, within_s=self.hub.owner_wait_s, backoff=self.hub.retry,
                      on_retry=again)  # fmt: skip
        try:
            return await retry.call(lambda: self._sweep(request, policy, deadline))
        except _Interrupted as exc:
            gave_up = f"given up after {retry.failures} tries in {self.hub.owner_wait_s:.0f} s"
            self._interrupted(str(exc), policy, gave_up)
            raise InstrumentError(f"EIS on {self.name}: {exc}; {gave_up}") from None

    async def _sweep(self, request: EisRequest, policy: str, deadline_s: float) -> EisResult:
        """One try: book, measure; on an interruption, what its policy says (``repeat``:
        :class:`_Interrupted`, for :meth:`measure_eis` to try again after a wait)."""
        await self.hub.wait_owner(self.ref.agent, f"EIS on {self.name}")
        try:
            hold = self.hub.leases.hold(self.name, self.run_id, self.hub.wait_recorder(self.run_id))
            async with hold as lease:
                try:
                    result: EisResult = await self._leased(
                        lease, "measure_eis", deadline_s, request=request
                    )
                    return result
                except (OwnerLost, LeaseLost) as exc:
                    lease.end_state, lease.end_reason = "interrupted", str(exc)
                    why = str(exc)
        except LabUnavailable as exc:
            why = str(exc)
        if policy == "repeat":
            raise _Interrupted(why)
        self._interrupted(why, policy, None)
        if policy == "abort":
            ex = self.hub.executors.get(self.run_id)
            if ex is None:
                raise InstrumentError(f"EIS on {self.name} interrupted; policy abort")
            ex.request_abort(f"EIS on {self.name} interrupted ({why}); its policy is abort")
        return empty_spectrum()

    def _interrupted(self, why: str, policy: str, then: str | None) -> None:
        """Count and record (a ``notify`` event of the run) one interrupted try."""
        self.hub.interruptions += 1
        message = f"EIS on {self.name} interrupted ({why}); policy {policy}"
        log.warning("%s: %s%s", self.run_id, message, f": {then}" if then else "")
        self.hub.record(self.run_id, "notify", message=message + (f": {then}" if then else ""),
                        resource=self.name, policy=policy)  # fmt: skip

    async def measure_ocv(self, duration_s: float) -> float:
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"{self.name}: OCV duration must be > 0 s, got {duration_s}")
        v: float = await self._once("measure_ocv", 30.0 + 2 * duration_s, duration_s=duration_s)
        return v

    async def safe_state(self) -> None:
        # The owner puts the instrument in its safe state whenever a lease ends during a
        # command; a run that holds no lease must not touch an instrument others use.
        if self.lease is not None and not self.lease.lost.is_set():
            await self._leased(self.lease, "safe_state", CALL_DEADLINE_S)


class RemoteChamber(_Remote):
    """A ``ChamberController`` on another agent (one lease per command)."""

    kind = "chamber"

    async def set_temperature(self, celsius: float) -> None:
        await self._once("set_temperature", celsius=celsius)

    async def read_temperature(self) -> float:
        t: float = await self._once("read_temperature")
        return t

    async def safe_state(self) -> None:
        return None  # shared: the owner decides (a chamber keeps other cells' temperature)


class RemoteCycler(_Remote):
    """A ``CyclerChannel`` on another agent, leased for the run's life (``aclose`` ends
    the lease). Station files do not wire a cell's cycler through another PC; this is
    for instruments that must be reached that way."""

    kind = "cycler"

    def __init__(self, hub: RemoteHub, ref: RemoteRef, run_id: str) -> None:
        super().__init__(hub, ref, run_id)
        self._stack = contextlib.AsyncExitStack()

    async def _call(self, method: str, deadline_s: float = CALL_DEADLINE_S, **kw: Any) -> Any:
        if self.lease is None or self.lease.lost.is_set():
            await self.hub.wait_owner(self.ref.agent, f"{self.name} {method}")
            self.lease = await self._stack.enter_async_context(
                self.hub.leases.hold(self.name, self.run_id)
            )
        return await self._leased(self.lease, method, deadline_s, **kw)

    async def aclose(self) -> None:
        self.lease = None
        await self._stack.aclose()

    def bind_run(self, run_id: str) -> None:
        """Every call carries the run id; the owner binds its channel to it."""
        self.run_id = run_id

    async def set_limits(self, limits: ChannelLimits) -> None:
        await self._call("set_limits", limits=limits)

    async def get_limits(self) -> ChannelLimits:
        r: ChannelLimits = await self._call("get_limits")
        return r

    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        await self._call("start_block", block_id=block_id, steps=list(steps))

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        await self._call("attach_block", block_id=block_id, steps=list(steps),
                         time_base_s=time_base_s)  # fmt: skip

    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        while True:  # the owner answers within its deadline; ask again until the block ends
            st: ChannelStatus = await self._call("status")
            if st.state.value != "running":
                r: BlockResult = await self._call(
                    "wait_block", poll_s=poll_s, max_poll_s=max_poll_s
                )
                return r
            await asyncio.sleep(poll_s)

    async def status(self) -> ChannelStatus:
        r: ChannelStatus = await self._call("status")
        return r

    async def read_records(self, after_seq: int) -> RecordBatch:
        r: RecordBatch = await self._call("read_records", after_seq=after_seq)
        return r

    async def pause(self) -> None:
        await self._call("pause")

    async def resume(self) -> None:
        await self._call("resume")

    async def safe_state(self) -> None:
        await self._call("safe_state")


class HubConnector:
    """The agent's :class:`~orchestrator.instruments.hw.remote.RemoteConnector`: opening a
    ``driver: remote`` instrument gives these proxies; :func:`bind_run` names their run."""

    def __init__(self, hub: RemoteHub) -> None:
        self.hub = hub

    def channel(self, capability: Any, agent: str, instrument: str, channel: int) -> Any:
        ref = RemoteRef(agent, instrument, channel)
        if capability.value == "impedance":
            return RemoteImpedance(self.hub, ref, "")
        if capability.value == "chamber":
            return RemoteChamber(self.hub, ref, "")
        raise InstrumentError(f"{ref.resource}: no remote {capability.value} channel")


def bind_run(obj: object, run_id: str) -> bool:
    """Tell a remote proxy (opened through the registry) which run uses it."""
    if isinstance(obj, _Remote):
        obj.run_id = run_id
        return True
    return False

"""The owning agent's side of a shared instrument: open it, and obey only fenced calls.

:class:`SharedInstruments` holds the instruments a station file lists under
``lab.shared``, opened once for the agent's life. :meth:`SharedInstruments.call` runs
one capability method for a caller that holds the live lease of the channel (checked
by :class:`~.booking.Fences` before the call and every ``check_s`` during it); when the
lease is lost mid-call the call is cancelled and the instrument put in its safe state.
Calls on one channel never overlap. Every call is audited (``labrig.lab.audit``).

Opening an instrument here is a stop-gap until the instrument registry
(``orchestrator/instruments``) offers opening one instrument by its station entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.capabilities import InstrumentError

from ..instruments import Capability
from ..station import InstrumentConfig
from .booking import Fences, LeaseLost, StaleToken
from .wire import decode_args, encode_result

__all__ = ["CallRecord", "SharedInstruments", "open_shared_instrument"]

log = logging.getLogger("labrig.lab.service")
audit = logging.getLogger("labrig.lab.audit")

SAFE_STATE_DEADLINE_S = 10.0
#: what another agent's runs may use of an instrument this agent owns
SHAREABLE = (Capability.impedance, Capability.chamber)


async def open_shared_instrument(
    stack: contextlib.AsyncExitStack,
    name: str,
    inst: InstrumentConfig,
    *,
    sim: bool = False,
    command_log: str | None = None,
) -> tuple[str, list[Any]]:
    """``(kind, [one capability object per channel])`` for a shared instrument, opened
    through the instrument registry (``sim``: its simulator, logging its commands to
    ``command_log`` where it offers that)."""
    from ..instruments import OpenRequest, entry

    found = entry(inst.driver)
    if sim:
        kind = next((k for k in SHAREABLE if k in found.capabilities), None)
        if kind is not None:
            return kind.value, await _simulated(stack, name, inst, kind, command_log)
    if inst.address is None:
        raise InstrumentError(f"shared instrument {name!r} has no address")
    kind = next((k for k in SHAREABLE if k in found.capabilities), None)
    if found.open is None or kind is None:
        raise InstrumentError(
            f"instrument {name!r} (driver {inst.driver}) cannot be shared "
            f"(shareable: an instrument offering {' or '.join(c.value for c in SHAREABLE)})"
        )
    request = OpenRequest(
        name=name,
        address=inst.address,
        channels=inst.channels,
        options=found.parse_options(inst.options),
        labels={i: kind.value for i in range(inst.channels)},
    )
    handle = await stack.enter_async_context(found.open(request))
    channels: list[Any] = [
        handle.impedance_channel(i)
        if kind is Capability.impedance
        else handle.chamber_controller(i)
        for i in range(inst.channels)
    ]
    return kind.value, channels


async def _simulated(
    stack: contextlib.AsyncExitStack,
    name: str,
    inst: InstrumentConfig,
    kind: Capability,
    command_log: str | None,
) -> list[Any]:
    """A shared instrument's simulator (``labrig agent --sim``): each channel measures a
    simulated cell of its own (one simulator per channel, all logging to ``command_log``)."""
    from ..instruments import InstrumentUse, entry
    from ..instruments.sim.cell import SimCell
    from ..instruments.sim.station import simulate

    found = entry(inst.driver)
    options = found.parse_options(inst.options)
    out: list[Any] = []
    for i in range(inst.channels):
        use = InstrumentUse(found, name, inst.address, inst.channels, options, {i: kind.value})
        sim = await stack.enter_async_context(
            simulate(use, SimCell(None, seed=i), command_log=command_log)
        )
        handle = await sim.connect(stack)
        if kind is Capability.impedance:
            out.append(handle.impedance_channel(i))
        else:
            out.append(handle.chamber_controller(i))
    return out


@dataclass(slots=True)
class CallRecord:
    """One call as the owner saw it (kept in memory for the audit view)."""

    principal: str
    run_id: str
    resource: str
    method: str
    token: int
    started: float
    ended: float = 0.0
    outcome: str = "running"


@dataclass
class _Channel:
    kind: str
    obj: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SharedInstruments:
    """The shared channels of one agent, each behind its fencing check."""

    def __init__(self, agent: str, fences: Fences, *, check_s: float = 1.0) -> None:
        self.agent = agent
        self.fences = fences
        self.check_s = check_s
        self.channels: dict[tuple[str, int], _Channel] = {}
        self.drivers: dict[str, str] = {}
        self.recent: list[CallRecord] = []

    def add(self, name: str, driver: str, kind: str, objs: list[Any]) -> None:
        self.drivers[name] = driver
        for i, obj in enumerate(objs):
            self.channels[(name, i)] = _Channel(kind, obj)

    def resource(self, instrument: str, channel: int) -> str:
        return f"{self.agent}:{instrument}/{channel}"

    def describe(self) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (name, _i), ch in sorted(self.channels.items()):
            d = out.setdefault(
                name, {"name": name, "kind": ch.kind, "driver": self.drivers[name], "channels": 0}
            )
            d["channels"] += 1
        return list(out.values())

    async def call(
        self,
        principal: str,
        instrument: str,
        channel: int,
        method: str,
        *,
        token: int,
        run_id: str,
        args: dict[str, Any],
    ) -> Any:
        """Run ``method`` under the lease ``token``; returns the JSON-ready result.

        Raises KeyError (no such channel), ``WireFormatError`` (bad method or
        arguments), :class:`StaleToken` / :class:`LeaseLost` (refused or stopped) and the
        instrument's own :class:`InstrumentError`.
        """
        ch = self.channels.get((instrument, channel))
        if ch is None:
            raise KeyError(f"{self.agent} shares no instrument channel {instrument}/{channel}")
        kwargs = decode_args(ch.kind, method, args)
        resource = self.resource(instrument, channel)
        rec = CallRecord(principal, run_id, resource, method, token, time.time())
        self.recent = [*self.recent[-999:], rec]
        try:
            await self.fences.check(resource, token)
            async with ch.lock:
                await self.fences.check(resource, token)  # it may have moved on meanwhile
                if ch.kind == "cycler":  # the lessee's run names what the channel starts
                    ch.obj.bind_run(run_id)
                result = await self._guarded(ch, resource, token, method, kwargs)
            rec.outcome = "ok"
            return encode_result(result)
        except (StaleToken, LeaseLost) as exc:
            rec.outcome = f"refused: {exc}"
            raise
        except InstrumentError as exc:
            rec.outcome = f"instrument error: {exc}"
            raise
        finally:
            rec.ended = time.time()
            audit.info(
                "%s run %s %s.%s token %d: %s", principal, run_id, resource, method, token,
                rec.outcome,
            )  # fmt: skip

    async def _guarded(
        self, ch: _Channel, resource: str, token: int, method: str, kwargs: dict[str, Any]
    ) -> Any:
        """The call, stopped (instrument to its safe state) if the lease goes."""
        task = asyncio.create_task(getattr(ch.obj, method)(**kwargs), name=f"{resource} {method}")
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.check_s)
                if done:
                    return task.result()
                try:
                    await self.fences.check(resource, token)
                except StaleToken as exc:
                    raise LeaseLost(f"{resource}: lease lost during {method}: {exc}") from None
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                await self._safe(ch, resource)
            raise

    async def _safe(self, ch: _Channel, resource: str) -> None:
        try:
            async with asyncio.timeout(SAFE_STATE_DEADLINE_S):
                await ch.obj.safe_state()
        except Exception as exc:
            log.error("safe state of %s failed: %s", resource, exc)

    async def safe_all(self) -> None:
        for key, ch in self.channels.items():
            await self._safe(ch, self.resource(*key))

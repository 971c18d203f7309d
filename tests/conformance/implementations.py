"""Every implementation of every capability, for the conformance suites.

Each registry entry that offers a capability and has a simulator is an implementation
of that capability here, with no further code: the entry's simulator is started as
``--sim`` starts it and the lab's driver is opened against it through the entry's
hardware opener (or, for the in-process simulators, their adapters). A new instrument
added to the registry with a simulator is therefore tested by the suite of each
capability it offers as soon as its entry exists.

An implementation that is not a registry entry (a test double, a remote client talking
to a served instrument, ...) joins by one entry in :data:`EXTRA`. What an implementation
legitimately does differently is stated once in :data:`TRAITS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from labrig.orchestrator.instruments import ENTRIES, Capability, Handle, InstrumentEntry
from labrig.orchestrator.instruments.registry import InstrumentUse
from labrig.orchestrator.instruments.sim.cell import SimCell
from labrig.orchestrator.instruments.sim.station import SimulatedInstrument, simulate


class Running:
    """A started implementation: ``connect()`` opens one host connection to it (a second
    call is a host that restarted); ``model`` is the simulator behind it, if any."""

    def __init__(
        self,
        connect: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
        model: object | None = None,
    ) -> None:
        self.connect = connect
        self.model = model


@dataclass(frozen=True)
class Traits:
    """What an implementation does differently, within its protocol's contract.

    ``host_side_blocks``: blocks run in the host (Keithley 2450), so a host restart loses
    them; the block starts again on attach and the limits must be set again first.
    ``pause_within_s``: how long after ``pause`` the output is off at the latest.
    ``end_overshoot_V``: how far past a voltage end a step may end (one host poll of a
    steep discharge knee when the host ends steps).
    """

    host_side_blocks: bool = False
    pause_within_s: float = 0.0
    end_overshoot_V: float = 0.03


@dataclass(frozen=True)
class Impl:
    """One implementation of one capability: ``start()`` gives a :class:`Running`."""

    id: str
    capability: Capability
    start: Callable[[], contextlib.AbstractAsyncContextManager[Running]]
    traits: Traits = field(default_factory=Traits)
    grace_s: float = 0.0  # virtual-clock slack for links through worker threads


#: per-implementation facts (by id); the default is the protocol's plain contract
TRAITS: dict[str, Traits] = {
    "keithley2450": Traits(host_side_blocks=True, pause_within_s=10.0, end_overshoot_V=0.1),
    # steps end on the host, one 5 s sample past the threshold at most
    "gamry": Traits(pause_within_s=10.0, end_overshoot_V=0.1),
}

#: station options of an entry for these tests (as a lab would set them)
OPTIONS: dict[str, dict[str, Any]] = {
    # host-side blocks poll the SMU; every 10 s keeps the cut-off within a few mV at 1C
    "keithley2450": {"poll_s": 10.0},
}

#: implementations that are not registry entries: one line each
EXTRA: list[Impl] = []

_PICK: dict[Capability, Callable[[Handle, int], Any]] = {
    Capability.cycler: Handle.cycler_channel,
    Capability.impedance: Handle.impedance_channel,
    Capability.chamber: Handle.chamber_controller,
    Capability.furnace: Handle.furnace_controller,
    Capability.gas: Handle.gas_line,
}
#: what a position calls channel 0 when it uses it (a gas line is named by its gas)
_LABEL = {Capability.gas: "N2"}


def _registry_impl(entry: InstrumentEntry[Any], capability: Capability) -> Impl:
    use = InstrumentUse(
        entry=entry,
        name=entry.driver,
        address=None,
        channels=1,
        options=entry.parse_options(OPTIONS.get(entry.driver, {})),
        labels={0: _LABEL.get(capability, capability.value)},
    )
    pick = _PICK[capability]

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[Running]:
        async with simulate(use, SimCell(None, seed=0)) as sim:
            yield Running(_connector(sim, pick), sim.started.model)

    return Impl(entry.driver, capability, start, TRAITS.get(entry.driver, Traits()))


def _connector(
    sim: SimulatedInstrument, pick: Callable[[Handle, int], Any]
) -> Callable[[], contextlib.AbstractAsyncContextManager[Any]]:
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        async with contextlib.AsyncExitStack() as stack:
            yield pick(await sim.connect(stack), 0)

    return connect


#: entries whose implementation is not their ``--sim`` stand-in: the real thing, end to
#: end (``remote``: the lab proxy to another agent's instrument, :mod:`.remote`)
END_TO_END = {"remote": {Capability.impedance: "remote_impedance"}}


def _end_to_end(driver: str, capability: Capability) -> list[Impl]:
    from . import remote

    name = END_TO_END[driver].get(capability)
    return [getattr(remote, name)()] if name is not None else []


def implementations(capability: Capability) -> list[Impl]:
    """Every implementation of ``capability``: registry entries with a simulator, then
    :data:`EXTRA`."""
    found: list[Impl] = []
    for e in ENTRIES:
        if capability not in e.capabilities or e.simulate is None:
            continue
        if e.driver in END_TO_END:
            found += _end_to_end(e.driver, capability)
        else:
            found.append(_registry_impl(e, capability))
    return found + [i for i in EXTRA if i.capability is capability]


def ids(impls: list[Impl]) -> list[str]:
    return [i.id for i in impls]

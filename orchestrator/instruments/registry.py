"""The shape of the instrument registry: what one entry says about a driver.

An :class:`InstrumentEntry` names a driver (the ``driver:`` of a station file), the
capabilities it offers, its typed options, how to open it on hardware from a station
entry, how to start its simulator for ``--sim``, what ``labrig sim serve DRIVER``
starts, and the ranges the instrument reaches as its options set it up
(:class:`InstrumentLimits`: EIS frequencies, current, temperatures, flow), which
``labrig validate --station`` and ``labrig run`` check every step against before anything
starts. The table itself is :data:`orchestrator.instruments.table.ENTRIES`.

Opening an instrument yields a :class:`Handle`: its channels, per capability, by channel
index. A BioLogic channel, say, hands out both a cycler and an impedance channel; a bus of
mass-flow controllers hands out one gas line per unit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from labrig.drivers.capabilities import (
    ChamberController,
    CyclerChannel,
    Furnace,
    GasFlow,
    ImpedanceChannel,
    InstrumentError,
)

__all__ = [
    "Capability",
    "Handle",
    "InstrumentEntry",
    "InstrumentLimits",
    "InstrumentOptions",
    "InstrumentUse",
    "LimitsOf",
    "NoOptions",
    "OpenRequest",
    "Opened",
    "Opener",
    "ServeFactory",
    "ServeOptions",
    "SimRequest",
    "SimStarted",
    "SimStarter",
    "SimulatedCell",
    "Source",
]


class Capability(StrEnum):
    """What a station position asks of an instrument (the position's field of that name).

    Each is one protocol of :mod:`drivers.capabilities`.
    """

    cycler = "cycler"  # CyclerChannel
    impedance = "impedance"  # ImpedanceChannel
    chamber = "chamber"  # ChamberController
    furnace = "furnace"  # Furnace
    gas = "gas"  # GasFlow


class InstrumentOptions(BaseModel):
    """The ``options:`` of a station's instrument entry; each driver subclasses it.

    Unknown keys are errors (a typo is not silently ignored); values are checked when the
    station file loads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check_channels(self, channels: int) -> None:
        """Raise ValueError if these options cannot serve ``channels`` channels."""


class NoOptions(InstrumentOptions):
    """A driver that takes no options."""


Opt = TypeVar("Opt", bound=InstrumentOptions)
T = TypeVar("T")


def _offer(kind: Capability, get: Callable[[int], T] | None, index: int, name: str) -> T:
    if get is None:
        raise InstrumentError(f"instrument {name!r} offers no {kind.value} channel")
    return get(index)


@dataclass(frozen=True)
class Handle:
    """An opened instrument: its channels per capability, by channel index.

    ``name`` is the station's name for the instrument (for error messages).
    """

    name: str
    cycler: Callable[[int], CyclerChannel] | None = None
    impedance: Callable[[int], ImpedanceChannel] | None = None
    chamber: Callable[[int], ChamberController] | None = None
    furnace: Callable[[int], Furnace] | None = None
    gas: Callable[[int], GasFlow] | None = None

    def offers(self) -> frozenset[Capability]:
        given = (
            (Capability.cycler, self.cycler),
            (Capability.impedance, self.impedance),
            (Capability.chamber, self.chamber),
            (Capability.furnace, self.furnace),
            (Capability.gas, self.gas),
        )
        return frozenset(c for c, get in given if get is not None)

    def cycler_channel(self, index: int) -> CyclerChannel:
        return _offer(Capability.cycler, self.cycler, index, self.name)

    def impedance_channel(self, index: int) -> ImpedanceChannel:
        return _offer(Capability.impedance, self.impedance, index, self.name)

    def chamber_controller(self, index: int) -> ChamberController:
        return _offer(Capability.chamber, self.chamber, index, self.name)

    def furnace_controller(self, index: int) -> Furnace:
        return _offer(Capability.furnace, self.furnace, index, self.name)

    def gas_line(self, index: int) -> GasFlow:
        return _offer(Capability.gas, self.gas, index, self.name)


@dataclass(frozen=True)
class OpenRequest(Generic[Opt]):
    """How to reach one instrument of a station.

    ``labels`` maps each channel a position uses to what the position calls it (the
    capability, or a gas line's name such as ``N2``).
    """

    name: str
    address: str
    channels: int
    options: Opt
    labels: Mapping[int, str] = field(default_factory=dict)


class SimulatedCell(Protocol):
    """The one simulated cell of a position, shared by the simulators that stand in for
    its instruments. What it is made of belongs to the simulated station
    (:class:`orchestrator.instruments.sim.cell.SimCell`)."""

    def follow(self, ambient_C: float) -> None:
        """The air around the cell is at ``ambient_C`` now."""
        ...


@dataclass(frozen=True)
class SimRequest(Generic[Opt]):
    """What a simulator needs to stand in for one instrument of a position.

    ``cell`` is the position's one simulated cell, shared by its cycler channel,
    impedance channel and chamber. ``furnace_limit_C`` is where a simulated furnace's
    independent over-temperature limit sits (None: none). ``command_log``: a file where
    the simulator logs every command it receives (simulators that offer one; the BioLogic).
    """

    name: str
    channels: int
    options: Opt
    labels: Mapping[int, str]
    cell: SimulatedCell
    seed: int = 0
    furnace_limit_C: float | None = None
    command_log: str | None = None


@dataclass(frozen=True)
class SimStarted:
    """A started simulator.

    ``address``: a wire-level simulator; the driver's hardware opener connects there.
    ``handle``: an in-process simulator with no wire; its channels directly.
    ``model``: the simulator object, for fault switches in tests and drills.
    ``couple``: wraps the opened channels so the simulated cell follows them (a chamber
    that sets the cell's temperature).
    """

    address: str | None = None
    handle: Handle | None = None
    model: object | None = None
    couple: Callable[[Handle], Handle] | None = None


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """``labrig sim serve``: a TCP port (0 picks a free one; None the instrument's usual
    port) or a pseudo-terminal, and ``speed`` simulated seconds per real second.
    ``channels`` (None: the instrument's usual count) and ``command_log`` (a file logging
    every command with its time and sender) only for entries whose ``serve_features``
    name them."""

    host: str = "127.0.0.1"
    port: int | None = None
    pty: bool = False
    speed: float = 1.0
    channels: int | None = None
    command_log: str | None = None


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """The ranges an instrument reaches as its station entry sets it up (None: not
    limited here). ``model`` names it in messages (``BioLogic VMP3``); ``settings`` names,
    per field, the station option that changes its figure
    (``{"frequency_Hz": "options.max_frequency_Hz"}``).

    ``frequency_Hz``: the EIS range; ``current_A``: the largest |current| a channel
    sources (a step's current, a GEIS amplitude plus bias); ``temperature_C``: the
    setpoints a chamber or furnace holds; ``flow_sccm``: the largest flow setpoint.
    """

    model: str = ""
    settings: Mapping[str, str] = field(default_factory=dict)
    frequency_Hz: tuple[float, float] | None = None
    current_A: float | None = None
    temperature_C: tuple[float, float] | None = None
    flow_sccm: float | None = None


Opener = Callable[[OpenRequest[Opt]], contextlib.AbstractAsyncContextManager[Handle]]
SimStarter = Callable[[SimRequest[Opt]], contextlib.AbstractAsyncContextManager[SimStarted]]
ServeFactory = Callable[[ServeOptions], contextlib.AbstractAsyncContextManager[str]]
LimitsOf = Callable[[Opt], InstrumentLimits]


@dataclass(frozen=True)
class InstrumentEntry(Generic[Opt]):
    """One driver: what it offers, its options, and how to open and simulate it.

    ``open`` is None for an instrument that exists only as a simulator (``sim``);
    ``simulate`` None for one that has no simulator yet; ``serve`` None for one that
    ``labrig sim serve`` cannot start on its own; ``limits`` None for one that declares
    no ranges (nothing is checked before a run). ``serve_features``: the optional
    :class:`ServeOptions` its ``serve`` honours (``channels``, ``command_log``).
    """

    driver: str
    summary: str
    capabilities: frozenset[Capability]
    options: type[Opt]
    open: Opener[Opt] | None
    simulate: SimStarter[Opt] | None
    serve: ServeFactory | None = None
    limits: LimitsOf[Opt] | None = None
    serve_features: frozenset[str] = frozenset()

    def limits_for(self, options: InstrumentOptions) -> InstrumentLimits:
        """The ranges of an instrument of this driver with ``options`` (a station's)."""
        if self.limits is None:
            return InstrumentLimits()
        return self.limits(self.parse_options(options))

    def parse_options(self, raw: object) -> Opt:
        """Validate ``raw`` (a mapping, None, or options already parsed) as this driver's
        options; pydantic's ValidationError names the bad field."""
        if isinstance(raw, self.options):
            return raw
        if isinstance(raw, InstrumentOptions):
            raw = raw.model_dump()
        return self.options.model_validate({} if raw is None else raw)


@dataclass(frozen=True)
class InstrumentUse:
    """One instrument of a station as a position uses it: its entry, the station's name
    and settings for it, and the channels the position uses (index -> label)."""

    entry: InstrumentEntry[Any]
    name: str
    address: str | None
    channels: int
    options: InstrumentOptions
    labels: Mapping[int, str]


@dataclass(frozen=True)
class Opened:
    """An instrument opened for a position: its channels, and in a dry run the simulator
    behind them (``model``)."""

    handle: Handle
    model: object | None = None


class Source(Protocol):
    """Where instruments come from: the lab's hardware, or simulators (``--sim``)."""

    async def open(self, stack: contextlib.AsyncExitStack, use: InstrumentUse) -> Opened: ...

"""The instrument registry: one table, keyed by driver name, of every instrument labrig
can open, simulate and serve (see :mod:`.table` and docs/adding-an-instrument.md).

Opening a station position's instruments through it lives in
:mod:`orchestrator.run.instruments` (hardware or ``--sim``); the simulated station in
:mod:`.sim`, the only orchestrator code that imports ``labrig.simulators``.
"""

from .registry import (
    Capability,
    Handle,
    InstrumentEntry,
    InstrumentLimits,
    InstrumentOptions,
    InstrumentUse,
    NoOptions,
    Opened,
    OpenRequest,
    ServeOptions,
    SimRequest,
    SimStarted,
    Source,
)
from .table import ENTRIES, REGISTRY, entry, known_drivers

__all__ = [
    "ENTRIES",
    "REGISTRY",
    "Capability",
    "Handle",
    "InstrumentEntry",
    "InstrumentLimits",
    "InstrumentOptions",
    "InstrumentUse",
    "NoOptions",
    "OpenRequest",
    "Opened",
    "ServeOptions",
    "SimRequest",
    "SimStarted",
    "Source",
    "entry",
    "known_drivers",
]

"""The instrument registry: one entry per driver name a station file may use.

Station validation, hardware opening, simulated stations (``--sim``), furnace positions
and ``labrig sim serve`` all read this table. A driver name is looked up here, never
imported from a station file, so a station file cannot run code of its choosing.
Adding an instrument: docs/adding-an-instrument.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .hw.alicat import AlicatOptions, alicat_limits, open_alicat
from .hw.biologic import BioLogicOptions, biologic_limits, open_biologic_entry
from .hw.espec import EspecOptions, espec_limits, open_espec
from .hw.eurotherm import EurothermOptions, eurotherm_limits, open_eurotherm
from .hw.gamry import GamryOptions, gamry_limits, open_gamry_entry
from .hw.keithley import K2450Options, k2450_limits, open_k2450
from .hw.maccor import MaccorOptions, maccor_limits, open_maccor
from .hw.palmsens import PalmSensOptions, open_palmsens, palmsens_limits
from .hw.remote import RemoteOptions, open_remote
from .registry import Capability, InstrumentEntry, NoOptions
from .sim.alicat import serve_alicat, simulate_alicat
from .sim.biologic import simulate_biologic_entry
from .sim.builtin import (
    SimChamberOptions,
    sim_chamber_limits,
    simulate_chamber,
    simulate_cycler,
    simulate_eis,
)
from .sim.espec import serve_espec, simulate_espec
from .sim.eurotherm import serve_eurotherm, simulate_eurotherm
from .sim.gamry import simulate_gamry_entry
from .sim.keithley import serve_k2450, simulate_k2450
from .sim.maccor import serve_maccor, simulate_maccor
from .sim.palmsens import serve_palmsens, simulate_palmsens
from .sim.remote import simulate_remote

__all__ = ["ENTRIES", "REGISTRY", "entry", "known_drivers"]

ENTRIES: tuple[InstrumentEntry[Any], ...] = (
    InstrumentEntry(
        driver="maccor",
        summary="MACCOR Series 4000 tester: MacNet JSON-RPC over TCP",
        capabilities=frozenset({Capability.cycler}),
        options=MaccorOptions,
        open=open_maccor,
        simulate=simulate_maccor,
        serve=serve_maccor,
        limits=maccor_limits,
        serve_features=frozenset({"channels", "command_log"}),
    ),
    InstrumentEntry(
        driver="keithley2450",
        summary="Keithley 2450 SMU as a galvanostat: SCPI over VISA",
        capabilities=frozenset({Capability.cycler}),
        options=K2450Options,
        open=open_k2450,
        simulate=simulate_k2450,
        serve=serve_k2450,
        limits=k2450_limits,
    ),
    InstrumentEntry(
        driver="palmsens",
        summary="PalmSens EmStat / Nexus potentiostat: MethodSCRIPT over serial",
        capabilities=frozenset({Capability.impedance}),
        options=PalmSensOptions,
        open=open_palmsens,
        simulate=simulate_palmsens,
        serve=serve_palmsens,
        limits=palmsens_limits,
    ),
    InstrumentEntry(
        driver="biologic",
        summary="BioLogic VMP-300 / SP-300 / VMP3: EC-Lab Development Package (Windows DLL)",
        capabilities=frozenset({Capability.cycler, Capability.impedance}),
        options=BioLogicOptions,
        open=open_biologic_entry,
        simulate=simulate_biologic_entry,
        limits=biologic_limits,
    ),
    InstrumentEntry(
        driver="gamry",
        summary="Gamry Interface 1000 / Reference 600: GamryCOM (Windows COM server)",
        capabilities=frozenset({Capability.cycler, Capability.impedance}),
        options=GamryOptions,
        open=open_gamry_entry,
        simulate=simulate_gamry_entry,
        limits=gamry_limits,
    ),
    InstrumentEntry(
        driver="eurotherm",
        summary="Eurotherm 2400 / 3200 furnace controller: Modbus RTU",
        capabilities=frozenset({Capability.furnace}),
        options=EurothermOptions,
        open=open_eurotherm,
        simulate=simulate_eurotherm,
        serve=serve_eurotherm,
        limits=eurotherm_limits,
    ),
    InstrumentEntry(
        driver="alicat",
        summary="Alicat mass-flow controllers, one unit id per channel: ASCII over serial",
        capabilities=frozenset({Capability.gas}),
        options=AlicatOptions,
        open=open_alicat,
        simulate=simulate_alicat,
        serve=serve_alicat,
        limits=alicat_limits,
    ),
    InstrumentEntry(
        driver="espec",
        summary="ESPEC-style climate chamber: ASCII lines",
        capabilities=frozenset({Capability.chamber}),
        options=EspecOptions,
        open=open_espec,
        simulate=simulate_espec,
        serve=serve_espec,
        limits=espec_limits,
    ),
    InstrumentEntry(
        driver="sim",
        summary="in-process simulated cycler channels (one simulated cell per position)",
        capabilities=frozenset({Capability.cycler}),
        options=NoOptions,
        open=None,
        simulate=simulate_cycler,
    ),
    InstrumentEntry(
        driver="sim-eis",
        summary="in-process simulated impedance channel on the position's cell",
        capabilities=frozenset({Capability.impedance}),
        options=NoOptions,
        open=None,
        simulate=simulate_eis,
    ),
    InstrumentEntry(
        driver="sim-chamber",
        summary="in-process simulated climate chamber setting the position's cell temperature",
        capabilities=frozenset({Capability.chamber}),
        options=SimChamberOptions,
        open=None,
        simulate=simulate_chamber,
        limits=sim_chamber_limits,
    ),
    InstrumentEntry(
        driver="remote",
        summary="an instrument another lab agent owns, through its API (lab://AGENT/INSTRUMENT)",
        capabilities=frozenset({Capability.impedance, Capability.chamber}),
        options=RemoteOptions,
        open=open_remote,
        simulate=simulate_remote,
    ),
)

#: driver name -> entry
REGISTRY: Mapping[str, InstrumentEntry[Any]] = MappingProxyType({e.driver: e for e in ENTRIES})
if len(REGISTRY) != len(ENTRIES):
    raise RuntimeError("instrument registry: a driver name is listed twice")


def known_drivers() -> str:
    return ", ".join(sorted(REGISTRY))


def entry(driver: str) -> InstrumentEntry[Any]:
    """The entry of ``driver``; ValueError naming the known ones if there is none."""
    found = REGISTRY.get(driver)
    if found is None:
        raise ValueError(f"unknown driver {driver!r}; known: {known_drivers()}")
    return found

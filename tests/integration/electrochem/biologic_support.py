"""Shared pieces of the BioLogic tests: a simulated instrument opened through the driver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.drivers.biologic import BioLogicChannel, open_biologic
from labrig.drivers.capabilities import ChannelLimits, ChannelStep, EndCondition, RecordRule
from labrig.simulators.biologic import BioLogicSim, simulate_biologic
from labrig.simulators.cell.impedance import impedance
from labrig.simulators.engine import ChannelEngine

from .conftest import ONE_C_A, V_MAX, V_MIN

LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)


@dataclass
class Rig:
    sim: BioLogicSim
    ch: BioLogicChannel
    engine: ChannelEngine


@contextlib.asynccontextmanager
async def rig(
    model: str = "VMP-300", *, seed: int = 1, noise: float = 1.0, sim_model: str | None = None,
    firmware: int = 5, **options: Any,
) -> AsyncIterator[Rig]:  # fmt: skip
    """A simulated ``sim_model`` (default ``model``) on one cell, opened as ``model``."""
    loop = asyncio.get_running_loop()
    engine = ChannelEngine(None, seed=seed, noise=noise, now=loop.time())
    options.setdefault("poll_s", 60.0)
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(
            simulate_biologic([engine], model=sim_model or model, firmware=firmware)
        )
        ch = await stack.enter_async_context(
            open_biologic(
                model=model,
                address=sim.address,
                library=sim.library,
                channel=0,
                name="bl/0",
                **options,
            )
        )
        yield Rig(sim, ch, engine)


def log_freqs(f_hi: float, f_lo: float, per_decade: int) -> tuple[float, ...]:
    n = round(np.log10(f_hi / f_lo) * per_decade) + 1
    return tuple(float(x) for x in np.logspace(np.log10(f_hi), np.log10(f_lo), n))


def cell_impedance(
    engine: ChannelEngine, freqs: tuple[float, ...], at: float
) -> npt.NDArray[np.complex128]:
    """The simulated cell's true (noise-free) impedance at instant ``at``."""
    return impedance(engine.model, engine.state_at(at), engine.temperature_C, freqs)


def formation_block(first_id: int, c_rate: float = 0.5) -> list[ChannelStep]:
    """CC charge to 3.68 V, rest 10 min, CCCV discharge to 2.28 V until C/20."""
    i = ONE_C_A * c_rate
    rec = RecordRule(every_s=60.0)
    return [
        ChannelStep(first_id, "cc", "charge", current_A=i,
                    ends=(EndCondition("voltage", ">=", V_MAX),), record=rec),
        ChannelStep(first_id + 1, "rest", "rest", ends=(EndCondition("time", ">=", 600.0),),
                    record=RecordRule(every_s=120.0)),
        ChannelStep(first_id + 2, "cccv", "discharge", current_A=-i, voltage_V=V_MIN,
                    cv_ends=(EndCondition("current", "<=", ONE_C_A / 20),), record=rec),
    ]  # fmt: skip

"""Capability adapters over in-process simulators: no wire, the quickest dry run.

:class:`SimCyclerChannel` and :class:`SimImpedanceChannel` act on one
:class:`~.cell.SimCell`'s engine; :class:`SimChamber` sets the temperature of its cells.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import numpy as np

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelState,
    ChannelStatus,
    ChannelStep,
    EisRequest,
    EisResult,
    EndCondition,
    InstrumentError,
    RecordBatch,
    StepEnd,
)
from labrig.simulators.engine import ChannelEngine, SimEnd, SimRecord, SimStep

from ..registry import SimulatedCell

__all__ = ["SimChamber", "SimCyclerChannel", "SimImpedanceChannel"]


def _to_sim_end(e: EndCondition) -> SimEnd:
    return SimEnd(quantity=e.quantity, op=e.op, value=e.value, action=e.action, goto=e.goto)


def _to_sim_step(s: ChannelStep) -> SimStep:
    return SimStep(
        step_id=s.step_id,
        mode=s.mode,
        kind=s.kind,
        current_A=s.current_A,
        voltage_V=s.voltage_V,
        ends=tuple(_to_sim_end(e) for e in s.ends),
        cv_ends=tuple(_to_sim_end(e) for e in s.cv_ends),
        record=SimRecord(every_s=s.record.every_s, dV_V=s.record.dV_V, dI_A=s.record.dI_A),
        max_duration_s=s.max_duration_s,
        temperature_C=s.temperature_C,
    )


_STATE = {
    "idle": ChannelState.idle,
    "running": ChannelState.running,
    "paused": ChannelState.paused,
    "done": ChannelState.done,
    "fault": ChannelState.fault,
}


class SimCyclerChannel:
    """A :class:`drivers.capabilities.CyclerChannel` over an in-process ChannelEngine."""

    def __init__(self, name: str, engine: ChannelEngine) -> None:
        self._name = name
        self.engine = engine
        self._loop = asyncio.get_running_loop()
        self._block: int | None = None

    @property
    def name(self) -> str:
        return self._name

    def _now(self) -> float:
        return self._loop.time()

    def bind_run(self, run_id: str) -> None:
        """Nothing is named on the instrument: the run id changes nothing here."""

    async def set_limits(self, limits: ChannelLimits) -> None:
        self.engine.set_limits(limits.v_min_V, limits.v_max_V, limits.i_max_A, limits.t_max_C)

    async def get_limits(self) -> ChannelLimits:
        lim = self.engine.limits()
        return ChannelLimits(lim.v_min, lim.v_max, lim.i_max, lim.t_max)

    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        self._block = block_id
        self.engine.start_block(block_id, [_to_sim_step(s) for s in steps], self._now())

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        st = self.engine.status(self._now())
        if st.block_id == block_id:
            self._block = block_id  # the engine kept running it: adopt it
            return
        await self.start_block(block_id, steps)

    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        while True:
            end = self.engine.end_time()
            st = self.engine.status(self._now())
            if st.state != "running" or end is None:
                break
            await asyncio.sleep(max(0.0, end - self._now()))
        st = self.engine.status(self._now())
        results = tuple(
            StepEnd(
                step_id=r.step_id,
                reason=r.reason,
                action=r.action,
                time_s=r.duration_s,
                charge_Ah=r.charge_Ah,
                energy_Wh=r.energy_Wh,
                end_voltage_V=r.end_voltage_V,
            )
            for r in self.engine.step_results(self._now())
        )
        return BlockResult(
            block_id=self._block or 0,
            steps=results,
            state=_STATE[st.state],
            fault=st.reason if st.state == "fault" else None,
        )

    async def status(self) -> ChannelStatus:
        st = self.engine.status(self._now())
        return ChannelStatus(
            state=_STATE[st.state],
            block_id=st.block_id,
            step_id=st.step_id,
            step_time_s=st.step_time_s,
            voltage_V=st.voltage_V,
            current_A=st.current_A,
            last_seq=st.last_seq,
            fault=st.reason if st.state == "fault" else None,
        )

    async def read_records(self, after_seq: int) -> RecordBatch:
        cols = self.engine.records_after(after_seq, self._now())
        if len(cols["seq"]) == 0:
            return RecordBatch.empty()
        return RecordBatch(
            seq=np.asarray(cols["seq"], dtype=np.int64),
            time_s=np.asarray(cols["time_s"], dtype=np.float64),
            step_id=np.asarray(cols["step_id"], dtype=np.int64),
            current_A=np.asarray(cols["current_A"], dtype=np.float64),
            voltage_V=np.asarray(cols["voltage_V"], dtype=np.float64),
            step_charge_Ah=np.asarray(cols["step_charge_Ah"], dtype=np.float64),
            temperature_C=np.asarray(cols["temperature_C"], dtype=np.float64),
        )

    async def pause(self) -> None:
        self.engine.pause(self._now())

    async def resume(self) -> None:
        self.engine.resume(self._now())

    async def safe_state(self) -> None:
        self.engine.stop(self._now())


class SimImpedanceChannel:
    """An :class:`ImpedanceChannel` measuring the same simulated cell."""

    def __init__(self, name: str, engine: ChannelEngine) -> None:
        self._name = name
        self.engine = engine

    @property
    def name(self) -> str:
        return self._name

    async def measure_eis(self, request: EisRequest) -> EisResult:
        freqs = np.asarray(request.frequencies_Hz, dtype=np.float64)
        if self.engine.status(asyncio.get_running_loop().time()).state == "running":
            raise InstrumentError("cannot measure impedance while the cycler drives the cell")
        z = self.engine.measure_impedance(freqs, asyncio.get_running_loop().time())
        # A sweep takes about three periods per frequency (at least 0.1 s each).
        duration = float(np.sum(np.maximum(3.0 / freqs, 0.1)))
        await asyncio.sleep(duration)
        return EisResult(
            frequency_Hz=freqs,
            z_real_ohm=np.real(z).astype(np.float64),
            z_imag_ohm=np.imag(z).astype(np.float64),
            dc_voltage_V=float(self.engine.ocv(asyncio.get_running_loop().time())),
            duration_s=duration,
        )

    async def measure_ocv(self, duration_s: float) -> float:
        if not math.isfinite(duration_s) or duration_s <= 0:
            raise ValueError(f"{self._name}: OCV duration must be > 0 s, got {duration_s!r}")
        await asyncio.sleep(duration_s)
        return float(self.engine.ocv(asyncio.get_running_loop().time()))

    async def safe_state(self) -> None:
        return None


class SimChamber:
    """A climate chamber setting its cells' temperature (first-order lag, ``tau_s``).

    Setpoints outside ``min_C``..``max_C`` are refused; ``safe_state`` stops
    conditioning: the air drifts back to ``room_C``.
    """

    def __init__(
        self,
        name: str,
        cells: Sequence[SimulatedCell],
        tau_s: float = 600.0,
        room_C: float = 25.0,
        min_C: float = -40.0,
        max_C: float = 100.0,
    ) -> None:
        self._name = name
        self.cells = list(cells)
        self.tau_s = tau_s
        self.room_C = room_C
        self.min_C = min_C
        self.max_C = max_C
        self._loop = asyncio.get_running_loop()
        self._setpoint = room_C
        self._temp = room_C
        self._t = self._loop.time()

    @property
    def name(self) -> str:
        return self._name

    def _advance(self) -> float:
        now = self._loop.time()
        dt = now - self._t
        self._t = now
        decay = float(np.exp(-dt / self.tau_s))
        self._temp = self._setpoint + (self._temp - self._setpoint) * decay
        for cell in self.cells:
            cell.follow(self._temp)
        return self._temp

    async def set_temperature(self, celsius: float) -> None:
        if not math.isfinite(celsius):
            raise InstrumentError(f"{self._name}: setpoint must be finite, got {celsius}")
        if not self.min_C <= celsius <= self.max_C:
            raise InstrumentError(
                f"{self._name}: {celsius} °C is outside the chamber's {self.min_C}..{self.max_C} °C"
            )
        self._advance()
        self._setpoint = celsius

    async def read_temperature(self) -> float:
        return self._advance()

    async def safe_state(self) -> None:
        self._advance()
        self._setpoint = self.room_C

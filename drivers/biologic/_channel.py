"""One BioLogic channel: a :class:`CyclerChannel` and an :class:`ImpedanceChannel`.

Impedance: PEIS (or GEIS for a current amplitude or bias) over one logarithmic or linear
sweep, at the OCV or a DC bias, read from the process-1 rows. Cycling: each step of a
block runs as techniques that the firmware ends on the step's conditions and the
channel's limits (:mod:`._cycling`); a supervisor task starts the next step. Safe state:
the channel stopped (the cell at open circuit). A lost link is survived by reconnecting
for ``reconnect_s`` (the instrument keeps measuring and buffering); after that the run
gets :class:`LinkLost` and the channel is stopped as soon as it can be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence
from types import TracebackType

import numpy as np

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelState,
    ChannelStatus,
    ChannelStep,
    EisRequest,
    EisResult,
    InstrumentError,
    InstrumentProtocolError,
    RecordBatch,
    SafetyTrip,
)
from labrig.drivers.recordstore import RecordStore, StepTally

from ._block import BlockRun, run_block
from ._cycling import plan_step, step_end
from ._device import BioLogicDevice
from ._errors import ChannelInUse
from ._params import Geis, Ocv, Peis, Technique, sweep
from ._runner import ChainRunner, Frame
from ._structs import State

__all__ = ["BioLogicChannel", "sweep_of"]


def sweep_of(freqs: Sequence[float]) -> tuple[float, float, int, bool]:
    """``(initial, final, count, logarithmic)`` of a frequency list that is one sweep."""
    f = np.asarray(freqs, dtype=np.float64)
    if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError("EIS needs positive, finite frequencies")
    if f.size == 1:
        return float(f[0]), float(f[0]), 1, True
    r = f[1:] / f[:-1]
    if np.allclose(r, r[0], rtol=1e-3) and r[0] != 1.0:
        return float(f[0]), float(f[-1]), int(f.size), True
    d = np.diff(f)
    if np.allclose(d, d[0], rtol=1e-3) and d[0] != 0.0:
        return float(f[0]), float(f[-1]), int(f.size), False
    raise ValueError("EIS frequencies must form one logarithmic or linear sweep")


class BioLogicChannel:
    """Channel ``channel`` (0-based) of an open :class:`BioLogicDevice`.

    ``phase_unit`` is how the firmware reports the impedance phase (``rad`` or ``deg``;
    check on the unit). ``eis_poll_s`` / ``poll_s`` are how often data is drained.
    """

    def __init__(
        self,
        device: BioLogicDevice,
        channel: int,
        *,
        name: str | None = None,
        poll_s: float = 10.0,
        eis_poll_s: float = 1.0,
        phase_unit: str = "rad",
        eis_average_n: int = 1,
        eis_wait_for_steady: float = 0.1,
        ocv_before_eis_s: float = 0.0,
        frequency_rtol: float = 0.01,
    ) -> None:
        if phase_unit not in ("rad", "deg"):
            raise ValueError(f"phase_unit must be 'rad' or 'deg', got {phase_unit!r}")
        self.device = device
        self.channel = channel
        self._name = name or f"{device.name}/{channel}"
        self.runner = ChainRunner(device, channel, poll_s=poll_s)
        self.poll_s = poll_s
        self.eis_poll_s = eis_poll_s
        self.phase_unit = phase_unit
        self.eis_average_n = eis_average_n
        self.eis_wait_for_steady = eis_wait_for_steady
        self.ocv_before_eis_s = ocv_before_eis_s
        self.frequency_rtol = frequency_rtol
        self.records = RecordStore()
        self._limits: ChannelLimits | None = None
        self._run: BlockRun | None = None
        self._task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None  # owns the block supervisor
        self._resume = asyncio.Event()
        self._resume.set()
        self._busy = asyncio.Lock()  # one measurement or block at a time
        self._t0 = 0.0

    @property
    def name(self) -> str:
        return self._name

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> None:
        """Check the channel and start owning tasks (a block's supervisor runs under a
        TaskGroup this entered; :meth:`__aexit__` ends it)."""
        self._t0 = asyncio.get_running_loop().time()
        if self._group is None:
            self._group = asyncio.TaskGroup()
            await self._group.__aenter__()
        try:
            await self.device.prepare_channel(self.channel)
        except BaseException:
            await self._end_tasks()
            raise

    async def _end_tasks(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)

    async def __aenter__(self) -> BioLogicChannel:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with contextlib.suppress(InstrumentError):  # must not mask the error that got us here
                await self.safe_state()
        finally:
            await self._end_tasks()

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    async def safe_state(self) -> None:
        """Channel stopped, cell at open circuit (shielded; ends a block). Idempotent."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, InstrumentError):
                await task
        run = self._run
        if run is not None and run.state in (ChannelState.running, ChannelState.paused):
            run.state = ChannelState.done
        await asyncio.shield(self._stop_verified())

    async def _stop_verified(self) -> None:
        await self.runner.stop()
        if int((await self.runner.values()).State) != State.STOP:
            raise SafetyTrip(f"{self.name}: channel still running after BL_StopChannel")

    # ------------------------------------------------------------------ impedance
    async def measure_ocv(self, duration_s: float) -> float:
        """Open-circuit voltage: the mean of the last tenth of an OCV technique."""
        if not math.isfinite(duration_s) or duration_s <= 0:
            raise ValueError(f"{self.name}: OCV duration must be > 0 s, got {duration_s!r}")
        volts: list[np.ndarray] = []
        tech = Ocv(duration_s, record_every_dt_s=min(1.0, duration_s / 10.0))
        await self._measure([tech], lambda fr: volts.append(fr.columns["Ewe_V"]), duration_s)
        v = np.concatenate(volts) if volts else np.empty(0)
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise InstrumentProtocolError(f"{self.name}: OCV returned no potential")
        return float(np.mean(v[-max(1, v.size // 10) :]))

    async def measure_eis(self, request: EisRequest) -> EisResult:
        """One PEIS (or GEIS) sweep; the instrument's frequencies and Z = |E|/|I| e^jφ."""
        tech, n = self._eis_technique(request)
        if self.ocv_before_eis_s > 0:
            await self.measure_ocv(self.ocv_before_eis_s)
        points: list[dict[str, np.ndarray]] = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        est = _sweep_seconds(request.frequencies_Hz, self.eis_average_n, self.eis_wait_for_steady)
        await self._measure(
            [tech], lambda fr: points.append(fr.columns) if fr.process == 1 else None, est,
            poll_s=self.eis_poll_s,
        )  # fmt: skip
        cols = {k: np.concatenate([p[k] for p in points]) for k in points[0]} if points else {}
        got = len(cols.get("freq_Hz", ()))
        if got != n:
            raise InstrumentProtocolError(f"{self.name}: EIS returned {got} points for {n}")
        f = cols["freq_Hz"]
        asked = np.asarray(request.frequencies_Hz, dtype=np.float64)
        if not np.allclose(f, asked, rtol=self.frequency_rtol, atol=0.0):
            raise InstrumentProtocolError(
                f"{self.name}: EIS frequencies {f[:5].tolist()}... differ from those asked"
            )
        phase = cols["phase_Zwe"] if self.phase_unit == "rad" else np.deg2rad(cols["phase_Zwe"])
        mod = cols["abs_Ewe_V"] / cols["abs_I_A"]
        return EisResult(
            frequency_Hz=f, z_real_ohm=mod * np.cos(phase), z_imag_ohm=mod * np.sin(phase),
            dc_voltage_V=float(np.mean(cols["Ewe_V"])), duration_s=loop.time() - t0,
        )  # fmt: skip

    def _eis_technique(self, request: EisRequest) -> tuple[Technique, int]:
        f0, f1, n, log = sweep_of(request.frequencies_Hz)
        fmax = max(f0, f1)
        if fmax > self.device.max_frequency_Hz * (1 + 1e-9):
            raise ValueError(
                f"{self.name}: {fmax:g} Hz is above this {self.device.model.name}'s "
                f"{self.device.max_frequency_Hz:g} Hz (station option max_frequency_Hz)"
            )
        sw = sweep(f0, f1, n, log=log, average_n=self.eis_average_n,
                   wait_for_steady=self.eis_wait_for_steady)  # fmt: skip
        if request.amplitude_A is not None or request.bias == "current":
            if request.amplitude_A is None:
                raise ValueError(f"{self.name}: a current bias needs amplitude_A (GEIS)")
            bias = request.bias_A if request.bias == "current" else 0.0
            if bias is None or not math.isfinite(bias):
                raise ValueError(f"{self.name}: bias 'current' needs a finite bias_A")
            return Geis(sw, request.amplitude_A, current_A=bias), n
        if request.amplitude_V is None:
            raise ValueError(f"{self.name}: EIS needs amplitude_V (PEIS) or amplitude_A (GEIS)")
        if request.bias == "voltage":
            if request.bias_V is None or not math.isfinite(request.bias_V):
                raise ValueError(f"{self.name}: bias 'voltage' needs a finite bias_V")
            return Peis(sw, request.amplitude_V, voltage_V=request.bias_V, vs_initial=False), n
        return Peis(sw, request.amplitude_V, voltage_V=0.0, vs_initial=True), n

    async def _measure(
        self,
        techs: list[Technique],
        sink: Callable[[Frame], None],
        est_s: float,
        *,
        poll_s: float | None = None,
    ) -> None:
        if self._run is not None and self._run.state == ChannelState.running:
            raise ChannelInUse(f"{self.name}: a block is running; no measurement now", code=-13)
        async with self._busy:
            try:
                await self.runner.run(techs, sink, deadline_s=3.0 * est_s + 120.0, poll_s=poll_s)
            except BaseException:
                with contextlib.suppress(InstrumentError):
                    await asyncio.shield(self._stop_verified())
                raise

    # ------------------------------------------------------------------ cycling
    def bind_run(self, run_id: str) -> None:
        """Nothing is named on the instrument: the run id changes nothing here."""

    async def set_limits(self, limits: ChannelLimits) -> None:
        """Keep the envelope: every step carries it as limit tests (the package has no
        channel-wide limits to write)."""
        if self._run is not None and self._run.state in (ChannelState.running, ChannelState.paused):
            raise InstrumentError(f"{self.name}: limits cannot change while a block runs")
        if limits.t_max_C is not None:
            raise InstrumentError(f"{self.name}: the channel has no temperature input")
        self._limits = limits

    async def get_limits(self) -> ChannelLimits:
        if self._limits is None:
            raise InstrumentError(f"{self.name}: no limits set on this channel yet")
        return self._limits

    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        run = self._run
        if run is not None and run.block_id == block_id:
            return
        if run is not None and run.state in (ChannelState.running, ChannelState.paused):
            raise InstrumentError(f"{self.name}: block {run.block_id} still runs")
        if self._limits is None:
            raise InstrumentError(f"{self.name}: set_limits before the first block")
        if not steps:
            raise InstrumentError(f"{self.name}: a block needs at least one step")
        mid = 0.5 * (self._limits.v_min_V + self._limits.v_max_V)
        try:  # refuse a block the channel cannot run before anything moves
            for s in steps:
                plan_step(s, self._limits, ewe_V=mid)
        except ValueError as exc:
            raise InstrumentError(f"{self.name}: {exc}") from None
        if self._group is None:
            raise InstrumentError(f"{self.name}: not open (use 'async with' or open())")
        self._run = BlockRun(block_id, tuple(steps))
        self._resume.set()
        self._task = self._group.create_task(
            self._supervise(self._run), name=f"{self.name}-block-{block_id}"
        )

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        """After a host restart the channel holds no trace of the block (the host runs
        its steps): stop whatever runs, then start the block from its first step."""
        if self._run is not None and self._run.block_id == block_id:
            return
        await self._stop_verified()
        self._t0 = min(self._t0, asyncio.get_running_loop().time() - time_base_s)
        await self.start_block(block_id, steps)

    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        run = self._run
        if run is None:
            raise InstrumentError(f"{self.name}: no block started")
        while run.state == ChannelState.running:
            task = self._task
            if task is None or task.done():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await asyncio.shield(task)
        return BlockResult(run.block_id, tuple(run.ends), run.state, run.fault)

    async def status(self) -> ChannelStatus:
        cv = self.runner.last_values
        run = self._run
        if run is None or run.state != ChannelState.running:
            cv = await self.runner.values()
        v = float(cv.Ewe) if cv is not None else math.nan
        i = float(cv.I) if cv is not None and int(cv.State) == State.RUN else 0.0
        if run is None:
            return ChannelStatus(ChannelState.idle, None, None, 0.0, v, i, self.records.last_seq)
        step_t = self._now() - run.step_t0 if run.state == ChannelState.running else 0.0
        return ChannelStatus(run.state, run.block_id, run.step_id, step_t, v, i,
                             self.records.last_seq, run.fault)  # fmt: skip

    async def read_records(self, after_seq: int) -> RecordBatch:
        return self.records.after(after_seq)

    async def pause(self) -> None:
        """Stop the step now; :meth:`resume` runs it again with what is left of its time
        and capacity ends."""
        run = self._run
        if run is not None and run.state == ChannelState.running:
            self._resume.clear()
            await self.runner.stop()

    async def resume(self) -> None:
        self._resume.set()

    # ------------------------------------------------------------------ supervisor
    async def _supervise(self, run: BlockRun) -> None:
        try:
            async with self._busy:
                await run_block(self, run)
        except Exception as exc:  # a fault of the run, never of the task that opened us
            run.state = ChannelState.fault
            run.fault = f"{type(exc).__name__}: {exc}"
        finally:
            if run.state != ChannelState.running:
                with contextlib.suppress(InstrumentError):
                    await asyncio.shield(self._stop_verified())

    def _on_frame(self, tally: StepTally, frame: Frame) -> None:
        c = frame.columns
        if "I_A" not in c or "time_s" not in c:
            return
        t = tally.t0_s + c["time_s"]
        t, i, q = tally.add(t, c["I_A"], c["Ewe_V"])
        tally.last_technique = frame.technique_index
        self.records.add(tally.step_id, t, i, c["Ewe_V"], q)

    def _on_rest_frame(self, tally: StepTally, frame: Frame) -> None:
        c = frame.columns
        n = c["Ewe_V"].size
        t = tally.t0_s + c["time_s"]
        t, i, q = tally.add(t, np.zeros(n), c["Ewe_V"])
        tally.last_technique = frame.technique_index
        self.records.add(tally.step_id, t, i, c["Ewe_V"], q)

    def _step_end(self, plan: object, tally: StepTally) -> tuple[str, str]:
        from ._cycling import StepPlan

        assert isinstance(plan, StepPlan)
        t = (tally.last_t if tally.last_t is not None else tally.t0_s) - tally.t0_s
        return step_end(plan, step_time_s=t, voltage_V=tally.last_v, current_A=tally.last_i,
                        last_technique=tally.last_technique)  # fmt: skip


def _sweep_seconds(freqs: Sequence[float], average_n: int, wait: float) -> float:
    f = np.asarray(freqs, dtype=np.float64)
    return float(np.sum((average_n + wait + 1.0) / f) + 0.5 * f.size)

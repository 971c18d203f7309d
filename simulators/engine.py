"""Firmware of one simulated cycler channel on a simulated cell.

:class:`ChannelEngine` runs blocks of steps the way a cycler does in firmware: it ends
each step on its own conditions, enforces the channel's safety limits, and records data
by the step's record rule. It is pure in time: every method that depends on time takes
``now`` (seconds on the caller's clock, never decreasing), so a wire-level server or an
in-process adapter drives it from its own clock (real or virtual) and tests need none.

How it works: ``start_block`` computes the whole block ahead of time from the cell state
(closed-form physics makes that fast) and keeps the records with running sequence
numbers; queries show only what has happened by ``now``. ``pause``/``stop`` (and a
temperature change while running) cut that precomputed future exactly at ``now`` by
re-running the interrupted step from its saved start state with a time cap, so the cell
is then in precisely the state it would be in had it run only until ``now``.

Record times (``time_s``) are the channel's test time: seconds since the engine was
created (or last reset). Sign convention: positive current charges the cell.

API at a glance (``now`` is always the caller's clock in seconds)::

    eng = ChannelEngine("ncm85_ininli", seed=1, noise=1.0, now=t0, temperature_C=25.0)
    eng.set_limits(v_min, v_max, i_max, t_max=None)   eng.limits() -> Limits
    eng.start_block(block_id, [SimStep, ...], now)    eng.end_time() -> float | None
    eng.status(now) -> SimStatus                      eng.step_results(now) -> [SimStepResult]
    eng.records_after(seq, now) -> {column: ndarray}  (columns: RECORD_COLUMNS)
    eng.pause(now)  eng.resume(now)  eng.stop(now)  eng.reset(now)
    eng.set_temperature(T_C, now)  eng.measure_impedance(freqs, now)  eng.ocv(now)
    eng.circuit(now) -> CircuitElements   eng.state_at(now)   eng.age(cycles, days, now)

Mutating calls (start/pause/resume/stop/reset/set_*) refuse a ``now`` earlier than the
latest instant the engine has seen; reads may look at any instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .cell.impedance import CircuitElements, circuit_elements, impedance
from .cell.model import CellModel, CellState
from .cell.params import CellParams
from .cell.presets import preset
from .cell.runner import Progress, StepRun, run_step
from .cell.steps import (
    EngineBusy,
    EngineError,
    EngineFault,
    Limits,
    SimEnd,
    SimRecord,
    SimStep,
    validate_block,
)
from .channel_status import SimStatus, SimStepResult, State
from .record_log import RECORD_COLUMNS, RecordLog

__all__ = [
    "RECORD_COLUMNS",
    "ChannelEngine",
    "EngineBusy",
    "EngineError",
    "EngineFault",
    "Limits",
    "SimEnd",
    "SimRecord",
    "SimStatus",
    "SimStep",
    "SimStepResult",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(slots=True)
class _Segment:
    """One uninterrupted run of one step."""

    index: int
    step: SimStep
    start_abs: float
    start_state: CellState
    progress: Progress
    temperature_C: float
    run: StepRun

    @property
    def end_abs(self) -> float:
        return self.start_abs + self.run.end_t_s - self.progress.t_s


@dataclass(slots=True)
class _Block:
    block_id: int
    steps: tuple[SimStep, ...]
    segments: list[_Segment] = field(default_factory=list)
    results: list[tuple[float, SimStepResult]] = field(default_factory=list)
    final: State = "done"
    reason: str | None = None
    end_abs: float = 0.0
    end_state: CellState | None = None
    resume_at: tuple[int, Progress] | None = None  # where a paused block continues


class ChannelEngine:
    """One cycler channel on one simulated cell.

    ``cell``: a :class:`CellParams`, a preset name (see :mod:`simulators.cell.presets`),
    or None for the default preset. ``noise`` scales the measurement noise (0 = exact);
    ``seed`` makes it reproducible. ``now`` is the caller's clock at creation (test time
    0). ``temperature_C`` is the cell's ambient temperature.
    """

    TEMPERATURE_RESOLUTION_C = 0.01

    def __init__(
        self,
        cell: CellParams | str | None = None,
        *,
        seed: int = 0,
        noise: float = 1.0,
        now: float = 0.0,
        temperature_C: float = 25.0,
        voltage_noise_V: float = 0.2e-3,
        current_noise_rel: float = 3e-4,
        current_range_A: float = 0.01,
        step_horizon_s: float = 1.0e7,
    ) -> None:
        params = preset(cell) if isinstance(cell, str) or cell is None else cell
        if not isinstance(params, CellParams):
            raise EngineError(f"cell must be CellParams or a preset name, got {cell!r}")
        for n, v in (("noise", noise), ("now", now), ("temperature_C", temperature_C),
                     ("voltage_noise_V", voltage_noise_V), ("step_horizon_s", step_horizon_s),
                     ("current_noise_rel", current_noise_rel),
                     ("current_range_A", current_range_A)):  # fmt: skip
            if not math.isfinite(v):
                raise EngineError(f"{n} must be finite, got {v!r}")
        if noise < 0:
            raise EngineError(f"noise must be >= 0, got {noise}")
        self.params = params
        self.model = CellModel(params)
        self._rng = np.random.default_rng(seed)
        self._noise_v = noise * voltage_noise_V
        self._noise_i = noise * current_noise_rel * current_range_A
        self._z_noise = noise * 1e-3
        self._temperature = float(temperature_C)
        self._horizon = step_horizon_s
        self._limits = Limits()
        self._origin = float(now)
        self._last_now = float(now)
        self._base_state = self.model.fresh_state()
        self._base_abs = float(now)
        self._block: _Block | None = None
        self._base_newer = False  # base state set after the block ended (ageing, ambient)
        self._fault: str | None = None  # latched fault with its instant known
        self._log = RecordLog()

    # ------------------------------------------------------------------ configuration
    def set_limits(
        self,
        v_min: float,
        v_max: float,
        i_max: float,
        t_max: float | None = None,
        now: float | None = None,
    ) -> None:
        """Write the safety envelope (V, V, A, °C). Rejected while a block runs or is
        paused (``now`` defaults to the latest instant the engine has seen)."""
        t = self._last_now if now is None else now
        self._tick(t)
        if self._block is not None and self._block_active(t):
            raise EngineBusy("limits cannot change while a block runs or is paused")
        try:
            self._limits = Limits(float(v_min), float(v_max), float(i_max),
                                  None if t_max is None else float(t_max))  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise EngineError(f"bad limits: {exc}") from None

    def limits(self) -> Limits:
        """The safety envelope as held by the channel."""
        return self._limits

    @property
    def temperature_C(self) -> float:
        return self._temperature

    # ------------------------------------------------------------------ blocks
    def start_block(self, block_id: int, steps: Sequence[SimStep], now: float) -> None:
        """Start running ``steps`` at ``now``. Same ``block_id`` as the current: no-op.

        Raises :class:`EngineBusy` if another block is running or paused (stop it
        first), :class:`EngineFault` while a fault is latched, :class:`EngineError` for
        a block the firmware cannot run (explains which step and why).
        """
        self._tick(now)
        b = self._block
        if b is not None and b.block_id == block_id:
            return
        if not isinstance(block_id, int):
            raise EngineError(f"block_id must be an int, got {block_id!r}")
        if self._fault_at(now) is not None:
            raise EngineFault(f"channel in fault ({self._fault_at(now)}); reset() first")
        if b is not None and self._block_active(now):
            raise EngineBusy(f"block {b.block_id} is still {self._state_of(now)}; stop it first")
        steps_t = validate_block(steps, self._limits)
        self._base_state = self.state_at(now)
        self._base_abs = now
        nb = _Block(block_id=block_id, steps=steps_t)
        self._block = nb
        self._compute(nb, 0, Progress(), self._base_state, now)

    def end_time(self) -> float | None:
        """When (caller's clock) the current block stops running as now computed: it is
        done, faults, or pauses (by an end action or a host ``pause``). None if there is
        no block. ``resume`` computes a new end."""
        b = self._block
        return None if b is None else b.end_abs

    def status(self, now: float, *, live: bool = True) -> SimStatus:
        """State, position and readings at ``now``.

        ``live`` readings are exact at ``now`` (a re-simulation of the running step);
        otherwise they are the step's newest record, as a front panel that updates at
        the record rate shows them, which costs nothing.
        """
        self._check_time(now)
        b = self._block
        state = self._state_of(now)
        last_seq = self._log.last_seq(now)
        tt = now - self._origin
        if b is None:
            st = self.state_at(now)
            return SimStatus(state, None, None, 0.0, self._read_v(st), 0.0, last_seq, None,
                             self._temperature, tt)  # fmt: skip
        if state == "running":
            seg = self._segment_at(now)
            step_t = seg.progress.t_s + (now - seg.start_abs)
            latest = None if live else self._log.latest(now, seg.start_abs, seg.step.step_id)
            if latest is not None:
                # What the front panel shows: the newest reading of this step. Re-running
                # the step to this instant costs a simulation per status poll.
                v, i = latest
            else:
                run = self._rerun(seg, now)
                step_t, v, i = run.end_t_s, run.end_voltage_V, run.end_current_A
            return SimStatus(
                "running", b.block_id, seg.step.step_id, step_t, v, i, last_seq, None,
                seg.temperature_C, tt,
            )  # fmt: skip
        last = b.segments[-1] if b.segments else None
        st = self.state_at(now)
        return SimStatus(
            state, b.block_id, last.step.step_id if last else None,
            last.run.end_t_s if last else 0.0, self.model.rest_voltage(st), 0.0, last_seq,
            b.reason, self._temperature, tt,
        )  # fmt: skip

    def records_after(self, seq: int, now: float) -> dict[str, npt.NDArray[Any]]:
        """Records with sequence number > ``seq`` and time <= ``now``, as numpy columns
        (see :data:`RECORD_COLUMNS`)."""
        self._check_time(now)
        return self._log.after(seq, now)

    def step_results(self, now: float) -> list[SimStepResult]:
        """Results of the current block's steps that have ended by ``now``."""
        self._check_time(now)
        b = self._block
        if b is None:
            return []
        return [r for t, r in b.results if t <= now]

    def pause(self, now: float) -> None:
        """Pause the running block at ``now`` (output off). No-op unless running."""
        self._tick(now)
        if self._state_of(now) != "running":
            return
        b = self._block
        assert b is not None
        seg = self._truncate(now)
        b.final = "paused"
        b.reason = "paused by host"
        b.resume_at = (seg.index, seg.run.progress)

    def resume(self, now: float) -> None:
        """Continue a paused block at ``now`` (a host pause or a ``pause`` end action)."""
        self._tick(now)
        b = self._block
        if b is None or self._state_of(now) != "paused" or b.resume_at is None:
            return
        idx, pr = b.resume_at
        start = self.state_at(now)
        b.resume_at = None
        b.reason = None
        if idx >= len(b.steps):
            b.final, b.end_abs, b.end_state = "done", now, start
            return
        self._compute(b, idx, pr, start, now)

    def stop(self, now: float) -> None:
        """Output off at ``now``; ends a running or paused block (state done, reason
        ``stopped``). The interrupted step gets a result with reason ``stopped``."""
        self._tick(now)
        state = self._state_of(now)
        b = self._block
        if b is None:
            return
        if state == "running":
            seg = self._truncate(now)
            self._add_result(b, seg)
            b.final, b.reason = "done", "stopped"
        elif state == "paused":
            b.final, b.reason, b.resume_at = "done", "stopped", None

    def reset(self, now: float) -> None:
        """Clear a latched fault, stop any block, and restart test time at 0."""
        self.stop(now)
        if self._block is not None:
            self._base_state = self.state_at(now)
            self._base_abs = now
            self._block = None
        self._origin = now

    def set_temperature(self, temperature_C: float, now: float | None = None) -> None:
        """Set the cell's ambient temperature (°C). While a block runs, pass ``now``: the
        block is re-planned from that instant at the new temperature. Changes smaller than
        :attr:`TEMPERATURE_RESOLUTION_C` are ignored (a chamber settling would otherwise
        re-plan the block at every reading)."""
        if not math.isfinite(temperature_C) or temperature_C <= -273.15:
            raise EngineError(f"temperature must be a finite °C above -273.15, got {temperature_C}")
        if abs(temperature_C - self._temperature) < self.TEMPERATURE_RESOLUTION_C:
            if now is not None:
                self._tick(now)
            return
        if now is None:
            if self._block is not None and self._state_of(self._last_now) == "running":
                raise EngineBusy("pass now= to change the temperature while a block runs")
            self._temperature = float(temperature_C)
            return
        self._tick(now)
        if self._state_of(now) == "running":
            # rest parts before now happened at the old temperature
            b = self._block
            assert b is not None
            seg = self._truncate(now, final_point=False)  # the continuation records now
            self._temperature = float(temperature_C)
            self._compute(b, seg.index, seg.run.progress, seg.run.state, now)
            return
        self._rebase(now)
        self._temperature = float(temperature_C)

    # ------------------------------------------------------------------ cell access
    def measure_impedance(
        self, frequencies_Hz: npt.ArrayLike, now: float | None = None
    ) -> npt.NDArray[np.complex128]:
        """Impedance spectrum of the resting cell (Ω). Rejected while a block runs."""
        st = self._resting_state(now, "an impedance measurement")
        z = impedance(self.model, st, self._temperature, frequencies_Hz)
        if self._z_noise > 0:
            n = z.size
            z = z + np.abs(z) * self._z_noise * (
                self._rng.standard_normal(n) + 1j * self._rng.standard_normal(n)
            )
        return z

    def ocv(self, now: float | None = None) -> float:
        """Open-circuit voltage the channel reads now (the resting cell's terminal V)."""
        st = self._resting_state(now, "an OCV reading")
        return self._read_v(st)

    def circuit(self, now: float | None = None) -> CircuitElements:
        """The true circuit elements now (to check an impedance fit against)."""
        st = self.state_at(self._last_now if now is None else now)
        return circuit_elements(self.model, st, self._temperature)

    def state_at(self, now: float) -> CellState:
        """The exact cell state at ``now`` (diagnostics and tests)."""
        self._check_time(now)
        if self._block is not None and self._state_of(now) == "running":
            return self._rerun(self._segment_at(now), now).state
        st, t0 = self._rest_base()
        return self.model.rest(st, now - t0, self._temperature)

    def age(self, equivalent_cycles: float = 0.0, days: float = 0.0,
            now: float | None = None) -> None:  # fmt: skip
        """Fast-forward ageing (equivalent full cycles, calendar days) without simulating
        them; the cell is otherwise unchanged. Only while no block runs."""
        if equivalent_cycles < 0 or days < 0:
            raise EngineError("ageing must be forward (>= 0)")
        self._tick(self._last_now if now is None else now)
        st = self._resting_state(now, "ageing")
        self._base_state = replace(
            st,
            throughput_Ah=st.throughput_Ah + 2.0 * self.params.capacity_Ah * equivalent_cycles,
            age_s=st.age_s + days * 86400.0,
        )
        self._base_abs = self._last_now if now is None else now
        self._base_newer = True

    # ------------------------------------------------------------------ internals
    def _check_time(self, now: float) -> None:
        """Check ``now`` for a read; reads may look at any instant, and move the channel's
        notion of the present forward."""
        if not isinstance(now, int | float) or not math.isfinite(now):
            raise EngineError(f"now must be a finite number of seconds, got {now!r}")
        self._last_now = max(self._last_now, float(now))

    def _tick(self, now: float) -> None:
        """Check ``now`` for a request that changes the channel: never before the last."""
        if not isinstance(now, int | float) or not math.isfinite(now):
            raise EngineError(f"now must be a finite number of seconds, got {now!r}")
        if now < self._last_now - 1e-9:
            raise EngineError(
                f"time went backwards: now={now!r} after {self._last_now!r} (monotonic clock)"
            )
        self._last_now = max(self._last_now, now)

    def _read_v(self, st: CellState) -> float:
        v = self.model.rest_voltage(st)
        if self._noise_v > 0:
            v += float(self._rng.normal(0.0, self._noise_v))
        return v

    def _resting_state(self, now: float | None, what: str) -> CellState:
        t = self._last_now if now is None else now
        self._check_time(t)
        if self._block is not None and self._state_of(t) == "running":
            raise EngineBusy(f"{what} needs the cell at rest; block {self._block.block_id} runs")
        return self.state_at(t)

    def _rebase(self, now: float) -> None:
        """Fold the rest since the last block into the base state (before the ambient
        temperature changes, so the rest so far stays at the old temperature)."""
        self._base_state = self.state_at(now)
        self._base_abs = now
        self._base_newer = True

    def _rest_base(self) -> tuple[CellState, float]:
        """The state the cell rests from once no block drives it, and since when."""
        b = self._block
        if b is None or self._base_newer or b.end_state is None:
            return self._base_state, self._base_abs
        return b.end_state, b.end_abs

    def _fault_at(self, now: float) -> str | None:
        b = self._block
        if b is not None and b.final == "fault" and b.end_abs <= now:
            return b.reason
        return None

    def _state_of(self, now: float) -> State:
        b = self._block
        if b is None:
            return "idle"
        if now < b.end_abs:
            return "running"
        return b.final

    def _block_active(self, now: float) -> bool:
        return self._state_of(now) in ("running", "paused")

    def _segment_at(self, now: float) -> _Segment:
        b = self._block
        assert b is not None
        for seg in reversed(b.segments):
            if seg.start_abs <= now:
                return seg
        return b.segments[0]

    def _rerun(self, seg: _Segment, now: float) -> StepRun:
        cap = seg.progress.t_s + (now - seg.start_abs)
        if cap >= seg.run.end_t_s:
            return seg.run
        return run_step(self.model, seg.start_state, seg.step, seg.temperature_C, self._limits,
                        seg.progress, cap_s=cap, horizon_s=self._horizon)  # fmt: skip

    def _compute(self, b: _Block, idx: int, pr: Progress, state: CellState, t: float) -> None:
        """Run the block from step ``idx`` at abs time ``t`` until it ends, eagerly."""
        b.reason = None
        self._base_newer = False
        while True:
            step = b.steps[idx]
            temp = step.temperature_C if step.temperature_C is not None else self._temperature
            run = run_step(self.model, state, step, temp, self._limits, pr,
                           horizon_s=self._horizon)  # fmt: skip
            seg = _Segment(idx, step, t, state, pr, temp, run)
            b.segments.append(seg)
            self._store(seg)
            self._add_result(b, seg)
            t = seg.end_abs
            b.end_abs, b.end_state = t, run.state
            if run.fault is not None:
                b.final, b.reason = "fault", run.fault
                return
            act = run.action
            nxt = idx + 1
            if act == "goto":
                assert run.goto is not None
                nxt = run.goto
            elif act == "end_block":
                nxt = len(b.steps)
            elif act == "abort":
                b.final = "done"
                b.reason = f"aborted: step {step.step_id} ended on {run.reason}"
                return
            elif act == "pause":
                b.final, b.reason = "paused", f"paused by step {step.step_id} end"
                b.resume_at = (nxt, Progress())
                return
            if nxt >= len(b.steps):
                b.final = "done"
                return
            idx, pr, state = nxt, Progress(), run.state

    def _add_result(self, b: _Block, seg: _Segment) -> None:
        r = seg.run
        b.results.append(
            (
                seg.end_abs,
                SimStepResult(
                    step_id=seg.step.step_id, index=seg.index, reason=r.reason, action=r.action,
                    duration_s=r.end_t_s, charge_Ah=r.charge_Ah_total, energy_Wh=r.energy_Wh,
                    end_voltage_V=r.end_voltage_V, end_current_A=r.end_current_A,
                    end_time_s=seg.end_abs - self._origin, fault=r.fault,
                ),
            )
        )  # fmt: skip

    def _store(self, seg: _Segment) -> None:
        r = seg.run
        n = r.t_s.size
        if n == 0:
            return
        t_abs = seg.start_abs + (r.t_s - seg.progress.t_s)
        v = r.voltage_V.copy()
        i = r.current_A.copy()
        if self._noise_v > 0:
            v += self._rng.normal(0.0, self._noise_v, n)
        if self._noise_i > 0:
            i += self._rng.normal(0.0, self._noise_i, n)
        self._log.append(
            t_abs,
            {
                "time_s": t_abs - self._origin,
                "step_id": np.full(n, seg.step.step_id, dtype=np.int64),
                "current_A": i,
                "voltage_V": v,
                "step_charge_Ah": r.charge_Ah.copy(),
                "temperature_C": np.full(n, seg.temperature_C),
            },
        )

    def _truncate(self, now: float, final_point: bool = True) -> _Segment:
        """Cut the running block at ``now``; returns the interrupted (re-run) segment."""
        b = self._block
        assert b is not None
        seg = self._segment_at(now)
        k = b.segments.index(seg)
        # drop future segments, their results and their records
        b.segments = b.segments[:k]
        b.results = [(t, r) for t, r in b.results if t <= now and t <= seg.start_abs]
        self._log.drop_after(now)
        run = self._rerun(seg, now)
        new = replace(seg, run=run)
        b.segments.append(new)
        # the exact final point at now, unless a record already sits on it
        if final_point and not self._log.reaches(now) and run.t_s.size:
            last = replace(
                run,
                t_s=run.t_s[-1:], current_A=run.current_A[-1:], voltage_V=run.voltage_V[-1:],
                charge_Ah=run.charge_Ah[-1:],
            )  # fmt: skip
            self._store(replace(new, run=last))
        b.end_abs, b.end_state = now, run.state
        return new

"""One simulated BioLogic channel: the firmware that runs a loaded technique chain.

DC techniques (OCV, CP, CA, CPLIMIT, CALIMIT) become one block of steps on the channel
engine, which ends them on their durations and limit tests; their records are turned
into data rows. LOOP sends the chain back to an earlier technique a number of times; each
pass's rows carry its loop number. PEIS/GEIS measure the engine's cell impedance, one
point after another in simulated time. Rows wait in the channel's memory until the host
reads them, one technique, process and loop per read, at most one buffer's worth (1000
words) at a time.

The cell may be wired to another instrument too (a cycler that the channel measures the
impedance of between its blocks): the channel reads back, and stops, only the engine
blocks it started itself, and refuses to start while another instrument drives the cell.
"""

from __future__ import annotations

import cmath
import math
import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from labrig.simulators.cell.model import holding_current
from labrig.simulators.cell.steps import Action
from labrig.simulators.engine import ChannelEngine, EngineError, SimEnd, SimRecord, SimStep

from ._abi import WORDS
from ._techniques import IDS, DcStep, EisSweep, SimTechnique, TechniqueError, Test

__all__ = ["Frame", "SimChannel"]

#: seconds the firmware spends on each EIS point besides its periods
POINT_OVERHEAD_S = 0.1


def _f32(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0])


@dataclass(slots=True)
class Frame:
    """Rows of one technique and process, as they will be handed out."""

    technique_index: int
    technique_id: int
    process: int
    ncols: int
    start_time: float
    loop: int = 0
    rows: list[list[int]] = field(default_factory=list)


@dataclass(slots=True)
class _Eis:
    sweep: EisSweep
    start: float  # sim clock at BL_StartChannel
    sweep_start: float
    freqs: list[float]
    ends: list[float]  # sim clock at which each point is done
    z: list[complex] | None = None
    dc_V: float = 0.0
    emitted: int = 0
    stopped_at: float | None = None


class SimChannel:
    """Firmware of one channel on ``engine``'s cell. ``sp300`` picks the family."""

    def __init__(
        self,
        index: int,
        engine: ChannelEngine,
        *,
        sp300: bool,
        timebase_s: float,
        phase_unit: str = "rad",
        firmware: int = 5,
    ) -> None:
        self.index = index
        self.engine = engine
        self.sp300 = sp300
        # the firmware counts in the time base it reports, a float32
        self.timebase_s = struct.unpack("<f", struct.pack("<f", timebase_s))[0]
        self.phase_unit = phase_unit
        self.firmware = firmware
        self.eclab_running = False  # a fault: EC-Lab holds the channel
        self.chain: list[SimTechnique] = []
        self.complete = False
        self.running = False
        self.started_at = 0.0
        self.memory: deque[Frame] = deque()
        self.messages: deque[str] = deque()
        self._blocks = 0  # engine blocks started (ids -1, -2, ...: never a host's)
        self._seq = 0
        self._tech: int | None = None  # the technique running on the engine
        self._tech_start: dict[int, float] = {}  # technique -> s from BL_StartChannel
        self._origin = 0.0  # engine test time at the running technique's start
        self._eis: _Eis | None = None
        self._loops: dict[int, int] = {}  # LOOP technique -> times it sent the chain back
        self._loop_no = 0  # loops done since BL_StartChannel (the rows' loop number)

    # ------------------------------------------------------------------ loading
    def load(self, tech: SimTechnique, first: bool, last: bool) -> None:
        if first:
            self.chain = []
            self.complete = False
        elif not self.chain:
            raise EngineError("first technique not loaded")
        if tech.loop is not None and tech.loop.goto >= len(self.chain):
            raise TechniqueError(
                f"loop: protocol_number {tech.loop.goto} must name an earlier technique "
                f"(this is technique {len(self.chain)})",
                -4,
            )
        self.chain.append(tech)
        self.complete = last
        eis = [t for t in self.chain if t.sweep is not None]
        if eis and len(self.chain) > 1:
            raise EngineError("the simulator runs an EIS technique alone in its chain")

    # ------------------------------------------------------------------ run
    def start(self, now: float) -> None:
        if not self.complete:
            raise EngineError("technique chain not complete (last technique not loaded)")
        self.poll(now)  # keep what the previous run left
        st = self.engine.status(now, live=False)
        if st.state in ("running", "paused"):
            self.messages.append("the cell is driven by another instrument")
            raise EngineError("the cell is driven by another instrument")
        self.running = True
        self.started_at = now
        self._tech_start = {}
        self._eis = None
        self._loops = {}
        self._loop_no = 0
        first = self.chain[0]
        if first.sweep is not None:
            self._start_eis(first.sweep, now)
        else:
            self._start_dc(now)

    def _start_dc(self, now: float) -> None:
        self._start_technique(0, now)

    def _start_technique(self, k: int, at: float) -> None:
        """Technique ``k`` of the chain as one engine block, from instant ``at``."""
        tech = self.chain[k]
        run = tech.steps * (tech.cycles + 1)
        steps = [_sim_step(j, s, self._clamp(s, at)) for j, s in enumerate(run)]
        self._own_block(at)
        self._tech = k
        self._tech_start[k] = at - self.started_at
        self.engine.start_block(-self._blocks, steps, at)

    def _own_block(self, at: float) -> None:
        """The next engine block is this channel's: its records start after what the
        cell has recorded so far (another instrument's records are not this channel's)."""
        st = self.engine.status(at, live=False)
        self._blocks += 1
        self._seq = max(self._seq, st.last_seq)
        self._origin = st.test_time_s

    def _after(self, k: int) -> int | None:
        """The technique that follows technique ``k``, through LOOP techniques; None at
        the end of the chain."""
        nxt = k + 1
        while nxt < len(self.chain):
            loop = self.chain[nxt].loop
            if loop is None:
                return nxt
            done = self._loops.get(nxt, 0)
            if done >= loop.repeat:
                nxt += 1
                continue
            self._loops[nxt] = done + 1
            for inner in range(loop.goto, nxt):  # loops inside start afresh
                self._loops.pop(inner, None)
            self._loop_no += 1
            nxt = loop.goto
        return None

    def _clamp(self, s: DcStep, at: float) -> float:
        """The current a voltage step may draw: what holds its voltage at its start (a
        potentiostat applies the voltage at once; it does not ramp up to it)."""
        if s.mode != "cv":
            return 0.0
        st = self.engine.state_at(at)
        co = self.engine.model.coeffs(st, self.engine.temperature_C)
        i = holding_current(self.engine.model, co, st, s.setpoint)
        return abs(i) * (1.0 + 1e-9) + 1e-12

    def _advance(self, now: float) -> None:
        """Follow the chain: the next technique starts where the previous one ended."""
        while self._tech is not None:
            end = self.engine.end_time()
            if end is None or end > now:
                return
            self._collect_dc(end)
            st = self.engine.status(end, live=False)
            stopped = st.state == "fault" or (st.reason or "").startswith(("aborted", "stopped"))
            nxt = None if stopped else self._after(self._tech)
            if nxt is None or self.chain[nxt].sweep is not None:
                self._tech = None
                return
            self._start_technique(nxt, end)

    def _start_eis(self, sw: EisSweep, now: float) -> None:
        freqs = sw.frequencies()
        t = now + sw.settle_s
        ends = []
        for f in freqs:
            t += (sw.average_n + sw.wait) / f + POINT_OVERHEAD_S
            ends.append(t)
        self._eis = _Eis(sw, now, now + sw.settle_s, freqs, ends)
        if sw.settle_s > 0:  # the DC level settles: process-0 rows
            rec = SimRecord(every_s=sw.record_dt_s or None)
            step = SimStep(0, "rest", ends=(SimEnd("time", ">=", sw.settle_s),), record=rec)
            self._own_block(now)
            self._tech = 0
            self._tech_start[0] = 0.0
            self.engine.start_block(-self._blocks, [step], now)

    def stop(self, now: float) -> None:
        self.poll(now)
        if self._tech is not None:  # a block of this channel's runs: only that stops
            if self.engine.status(now, live=False).state in ("running", "paused"):
                self.engine.stop(now)
            self._collect_dc(now)
            self._tech = None
        if self._eis is not None and self._eis.stopped_at is None:
            self._eis.stopped_at = now
        self.poll(now)
        self.running = False

    # ------------------------------------------------------------------ progress
    def poll(self, now: float) -> None:
        """Move what happened by ``now`` into the channel's memory."""
        self._advance(now)
        self._collect_dc(now)
        eis = self._eis
        if eis is not None:
            self._collect_eis(eis, now)
        if self.running:
            dc_busy = self._tech is not None
            eis_busy = eis is not None and eis.stopped_at is None and eis.emitted < len(eis.freqs)
            self.running = dc_busy or eis_busy

    def _collect_dc(self, now: float) -> None:
        """Rows of the running technique's records up to ``now`` (only while a block of
        this channel's runs: the engine's other records are another instrument's)."""
        k = self._tech
        if k is None:
            return
        recs = self.engine.records_after(self._seq, now)
        if recs["seq"].size == 0:
            return
        self._seq = int(recs["seq"][-1])
        eis = self._eis is not None
        tech = self.chain[k]
        tid = IDS["geis" if self._geis() else "peis"] if eis else tech.id
        start = self._tech_start.get(k, 0.0)
        per_cycle = max(1, len(tech.steps))
        for n in range(recs["seq"].size):
            t_rel = float(recs["time_s"][n]) - self._origin
            ticks = max(0, int(t_rel / self.timebase_s))  # whole ticks elapsed
            v, i = float(recs["voltage_V"][n]), float(recs["current_A"][n])
            row = [ticks >> 32, ticks & 0xFFFFFFFF, _f32(v)]
            if eis:
                row.append(_f32(0.0))
            elif tech.stem == "ocv":
                row += [_f32(0.0)] if self.sp300 else []  # Ece on the SP-300 family
            else:
                row += [_f32(i), int(recs["step_id"][n]) // per_cycle]  # I, cycle
            self._push(k, tid, 0, start, row)

    def _geis(self) -> bool:
        return self._eis is not None and self._eis.sweep.galvanostatic

    def _collect_eis(self, eis: _Eis, now: float) -> None:
        limit = now if eis.stopped_at is None else min(now, eis.stopped_at)
        due = sum(1 for t in eis.ends if t <= limit)
        if due <= eis.emitted:
            return
        if eis.z is None:
            at = max(eis.sweep_start, self.engine.end_time() or eis.sweep_start)
            z = self.engine.measure_impedance(np.asarray(eis.freqs), at)
            eis.z = [complex(x) for x in z]
            ocv = self.engine.ocv(at)
            sw = eis.sweep
            eis.dc_V = ocv + sw.level if (sw.vs_initial and not sw.galvanostatic) else (
                sw.level if not sw.galvanostatic else ocv)  # fmt: skip
        tid = IDS["geis" if eis.sweep.galvanostatic else "peis"]
        for k in range(eis.emitted, due):
            self._push(0, tid, 1, 0.0, self._eis_row(eis, k))
        eis.emitted = due

    def _eis_row(self, eis: _Eis, k: int) -> list[int]:
        assert eis.z is not None
        z = eis.z[k]
        sw = eis.sweep
        if sw.galvanostatic:
            amp_i, amp_e = sw.amplitude, sw.amplitude * abs(z)
        else:
            amp_e, amp_i = sw.amplitude, sw.amplitude / abs(z)
        phase = cmath.phase(z)
        if self.phase_unit == "deg":
            phase = math.degrees(phase)
        t = eis.ends[k] - eis.start
        row = [_f32(eis.freqs[k]), _f32(amp_e), _f32(amp_i), _f32(phase), _f32(eis.dc_V),
               _f32(0.0), 0, _f32(0.0), _f32(0.0), _f32(0.0), _f32(0.0), 0, 0, _f32(t)]  # fmt: skip
        if not self.sp300:
            row.append(12)  # the current range (VMP3 family)
        return row

    def _push(self, tech: int, tid: int, process: int, start: float, row: list[int]) -> None:
        last = self.memory[-1] if self.memory else None
        if (
            last is None
            or (last.technique_index, last.process, last.loop) != (tech, process, self._loop_no)
            or len(last.rows) >= WORDS // len(row)
        ):
            last = Frame(tech, tid, process, len(row), start, self._loop_no)
            self.memory.append(last)
        last.rows.append(row)

    # ------------------------------------------------------------------ reads
    def take(self) -> Frame | None:
        return self.memory.popleft() if self.memory else None

    def values(self, now: float) -> tuple[int, float, float, float]:
        """State (0 stop, 1 run), Ewe, I, frequency now."""
        st = self.engine.status(now, live=False)
        eis = self._eis
        if self.running and eis is not None and eis.stopped_at is None and st.state != "running":
            k = min(eis.emitted, len(eis.freqs) - 1)
            return 1, eis.dc_V or st.voltage_V, 0.0, eis.freqs[k]
        return (1 if self.running else 0), st.voltage_V, st.current_A if self.running else 0.0, 0.0

    def memory_bytes(self) -> int:
        return sum(4 * f.ncols * len(f.rows) for f in self.memory)


def _sim_step(index: int, s: DcStep, clamp_A: float) -> SimStep:
    """One firmware step as an engine step (its tests end it by the step's exit rule:
    the next step, the next technique (the end of this technique's block), or stop)."""
    action: Action = "abort" if s.exit == 2 else "end_block" if s.exit == 1 else "next"
    ends = (SimEnd("time", ">=", s.duration_s),)
    tests = tuple(_end(t, action) for t in s.tests)
    rec = SimRecord(
        every_s=s.record_dt_s or None, dV_V=s.record_dv_V or None, dI_A=s.record_di_A or None
    )
    if s.mode == "rest":
        return SimStep(index, "rest", ends=(*ends, *tests), record=rec)
    if s.mode == "cc":
        return SimStep(index, "cc", current_A=s.setpoint, ends=(*ends, *tests), record=rec)
    return SimStep(index, "cv", current_A=clamp_A, voltage_V=s.setpoint, ends=ends,
                   cv_ends=tests, record=rec)  # fmt: skip


def _end(t: Test, action: Action) -> SimEnd:
    if t.variable == 0:
        return SimEnd("voltage", ">=" if t.above else "<=", t.value, action)
    # the firmware compares the signed current; the engine's ends see |I|: a test on the
    # side of zero the current keeps is "|I| below" when it points back towards zero
    toward_zero = (t.value >= 0) != t.above
    return SimEnd("current", "<=" if toward_zero else ">=", abs(t.value), action)

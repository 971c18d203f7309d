"""Keithley 2450 SMU as one galvanostat channel: :class:`K2450Channel`.

The 2450 has no step programme of its own, so blocks run *host-side*: the channel sets
the current, polls ``:READ?`` every ``poll_s``, ends steps on their conditions, and
collects the records itself. What protects the cell when the host is gone is the
instrument's voltage compliance ``:SOUR:CURR:VLIM``, written from the limits' ``v_max_V``:
it is the hardware guard; charging can never push the cell above it (the source turns
into a voltage clamp and ``:SOUR:CURR:VLIM:TRIP?`` reads 1, which this channel latches as
a fault). The compliance is symmetric in magnitude, so the lower voltage limit and the
current limit are supervised by the host only - say so to whoever sets the protocol.

Buffered acquisition (:meth:`K2450Channel.acquire`) uses the ``SimpleLoop`` trigger model;
the host sleeps through the run on its own clock and then fetches the buffer, so no VISA
call blocks while the instrument measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelState,
    ChannelStatus,
    ChannelStep,
    EndCondition,
    InstrumentError,
    LimitMismatch,
    RecordBatch,
    SafetyTrip,
    StepEnd,
)
from labrig.drivers.transport import Transport, transport_from_url

from . import codec

__all__ = ["K2450Channel"]

FloatArray = npt.NDArray[np.float64]
_SUPERVISED = frozenset({"voltage", "current", "time", "capacity", "dvdt"})


@dataclass(slots=True)
class _Run:
    block_id: int
    steps: tuple[ChannelStep, ...]
    ends: list[StepEnd]
    step_id: int | None = None
    step_start: float = 0.0
    state: ChannelState = ChannelState.running
    fault: str | None = None


class K2450Channel:
    """A 2450 run as a galvanostat; a :class:`~drivers.capabilities.CyclerChannel`.

    ``K2450Channel.from_url("visa://TCPIP::10.0.0.7::5025::SOCKET")``; use as an async
    context manager: its supervisor task runs under a TaskGroup entered by :meth:`open`
    and ended by :meth:`close`.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str = "k2450",
        timeout_s: float = 2.0,
        poll_s: float = 1.0,
    ) -> None:
        self.transport = transport
        self._name = name
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.identity: tuple[str, str, str, str] | None = None
        self.queries = 0
        self._lock = asyncio.Lock()
        self._limits: ChannelLimits | None = None
        self._run: _Run | None = None
        self._task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._resume = asyncio.Event()
        self._resume.set()
        self._records: list[tuple[float, ...]] = []
        self._seq = 0
        self._t0 = 0.0
        self._last_v = math.nan
        self._last_i = 0.0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> K2450Channel:
        tkw = {k: kwargs.pop(k) for k in ("manipulators", "backoff") if k in kwargs}
        return cls(transport_from_url(url, **tkw), **kwargs)

    @property
    def name(self) -> str:
        return self._name

    # ------------------------------------------------------------------ SCPI I/O
    async def write(self, command: str) -> None:
        async with self._lock:
            await self.transport.write(command.encode("ascii") + b"\n")

    async def query(self, command: str) -> bytes:
        """One query and its reply line (deadline ``timeout_s``)."""
        async with self._lock:
            self.queries += 1
            return await self.transport.query(
                command.encode("ascii") + b"\n", timeout_s=self.timeout_s
            )

    async def check_errors(self, after: str) -> None:
        """Raise :class:`InstrumentError` if the error queue holds anything."""
        code, msg = codec.decode_error(await self.query(codec.ERROR))
        if code != 0:
            while (await self.query(codec.ERROR)).strip()[:1] not in (b"0", b""):
                pass  # drain the rest so the next check starts clean
            raise InstrumentError(f"{self.name}: instrument error {code} {msg!r} after {after!r}")

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> None:
        if self._group is None:
            self._group = asyncio.TaskGroup()
            await self._group.__aenter__()
        try:
            await self.transport.open()
            self._t0 = asyncio.get_running_loop().time()
            self.identity = codec.decode_idn(await self.query("*IDN?"))
            await self.write(codec.output(False))
            for cmd in codec.SETUP:
                await self.write(cmd)
            await self.check_errors("setup")
        except BaseException:
            await self._end_tasks()
            await self.transport.close()
            raise

    async def close(self) -> None:
        try:
            await self.safe_state()
        except InstrumentError:
            pass  # closing must not mask the error that brought us here
        finally:
            await self._end_tasks()
            await self.transport.close()

    async def _end_tasks(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)

    async def __aenter__(self) -> K2450Channel:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ limits
    def bind_run(self, run_id: str) -> None:
        """Nothing is named on the instrument: the run id changes nothing here."""

    async def set_limits(self, limits: ChannelLimits) -> None:
        """Write the compliance (``v_max_V``) and keep the rest for host supervision."""
        if self._run is not None and self._run.state in (ChannelState.running, ChannelState.paused):
            raise InstrumentError(f"{self.name}: limits cannot change while a block runs")
        if limits.i_max_A > 1.05:
            raise InstrumentError(
                f"{self.name}: i_max {limits.i_max_A} A exceeds the 2450's 1.05 A"
            )
        await self.write(codec.voltage_limit(limits.v_max_V))
        await self.check_errors("voltage limit")
        self._limits = limits
        got = await self.get_limits()
        if not got.matches(limits):
            raise LimitMismatch(f"{self.name}: wrote {limits}, read back {got}")

    async def get_limits(self) -> ChannelLimits:
        """The voltage compliance as the 2450 holds it (``:SOUR:CURR:VLIM?``); the lower
        voltage and the current limit are supervised here, so before set_limits has run
        on this object (after a host restart) they read NaN: nothing held them."""
        cmd = ":SOUR:CURR:VLIM?"
        vlim = codec.decode_number(await self.query(cmd), cmd)
        lim = self._limits
        if lim is None:
            return ChannelLimits(math.nan, vlim, math.nan)
        return ChannelLimits(lim.v_min_V, vlim, lim.i_max_A, lim.t_max_C)

    # ------------------------------------------------------------------ blocks
    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        run = self._run
        if run is not None and run.block_id == block_id:
            return
        if run is not None and run.state in (ChannelState.running, ChannelState.paused):
            raise InstrumentError(f"{self.name}: block {run.block_id} still runs")
        if run is not None and run.state == ChannelState.fault:
            raise SafetyTrip(f"{self.name}: channel in fault ({run.fault}); reset first")
        lim = self._limits
        if lim is None:
            raise InstrumentError(f"{self.name}: set_limits before the first block")
        for s in steps:
            if s.mode not in ("rest", "cc"):
                raise InstrumentError(
                    f"{self.name}: step {s.step_id}: mode {s.mode!r} is not run by this "
                    "galvanostat (rest and cc only)"
                )
            bad = [e.quantity for e in s.ends if e.quantity not in _SUPERVISED]
            if bad:
                raise InstrumentError(
                    f"{self.name}: step {s.step_id}: ends on {bad} are not supervised here"
                )
            if abs(s.current_A) > lim.i_max_A:
                raise InstrumentError(
                    f"{self.name}: step {s.step_id}: |{s.current_A}| A above i_max {lim.i_max_A} A"
                )
        if not steps:
            raise InstrumentError(f"{self.name}: a block needs at least one step")
        if self._group is None:
            raise InstrumentError(f"{self.name}: not open (use 'async with' or open())")
        self._run = _Run(block_id, tuple(steps), [])
        self._resume.set()
        self._task = self._group.create_task(
            self._supervise(self._run), name=f"{self.name}-block-{block_id}"
        )

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        """After a host restart: the 2450 keeps no trace of blocks (the host ran them),
        so a block this object is not running starts again from its first step, after
        the output a dead host may have left on is switched off. Steps that end on
        voltage then end at once if the cell is already there."""
        if self._run is not None and self._run.block_id == block_id:
            return
        await self._output_off_verified()
        now = asyncio.get_running_loop().time()
        self._t0 = now - max(time_base_s, now - self._t0)  # channel time never goes back
        await self.start_block(block_id, steps)

    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        run = self._run
        if run is None:
            raise InstrumentError(f"{self.name}: no block started")
        while run.state == ChannelState.running:
            task = self._task
            if task is not None and not task.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_s):
                        await asyncio.shield(task)
            else:
                await asyncio.sleep(poll_s)
        return BlockResult(run.block_id, tuple(run.ends), run.state, run.fault)

    async def status(self) -> ChannelStatus:
        run = self._run
        now = asyncio.get_running_loop().time()
        if run is None:
            return ChannelStatus(ChannelState.idle, None, None, 0.0, self._last_v, 0.0, self._seq)
        return ChannelStatus(
            run.state, run.block_id, run.step_id,
            now - run.step_start if run.state == ChannelState.running else 0.0,
            self._last_v, self._last_i, self._seq, run.fault,
        )  # fmt: skip

    async def read_records(self, after_seq: int) -> RecordBatch:
        rows = [r for r in self._records if r[0] > after_seq]
        if not rows:
            return RecordBatch.empty()
        a = np.array(rows, dtype=np.float64)
        return RecordBatch(
            a[:, 0].astype(np.int64), a[:, 1], a[:, 2].astype(np.int64),
            a[:, 3], a[:, 4], a[:, 5], a[:, 6],
        )  # fmt: skip

    async def pause(self) -> None:
        if self._run is not None and self._run.state == ChannelState.running:
            self._resume.clear()

    async def resume(self) -> None:
        self._resume.set()

    async def safe_state(self) -> None:
        """Output off (shielded, own deadline); ends a running block. Idempotent."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, InstrumentError):
                await task
        if self._run is not None and self._run.state in (ChannelState.running, ChannelState.paused):
            self._run.state = ChannelState.done
        if self.transport.is_open:
            await asyncio.shield(self._output_off_verified())
        self._last_i = 0.0

    async def _output_off_verified(self) -> None:
        await self.write(codec.output(False))
        # the write went out even if nothing comes back; the query proves it was taken
        if codec.decode_bool(await self.query(":OUTP?"), ":OUTP?"):
            raise SafetyTrip(f"{self.name}: output still on after :OUTP OFF")

    # ------------------------------------------------------------------ buffered runs
    async def acquire(self, count: int, interval_s: float) -> tuple[FloatArray, FloatArray]:
        """``count`` voltage readings ``interval_s`` apart: (voltage V, time s from first).

        The output must be on. The host sleeps through the run on its own clock and
        polls the buffer count, so no VISA call blocks while the instrument measures.
        """
        await self.write(codec.trigger_simple_loop(count, interval_s))
        await self.write("INIT")
        await self.check_errors("INIT")  # also proves INIT was taken before we sleep
        await asyncio.sleep(interval_s * max(0, count - 1))
        cmd = codec.ACTUAL
        for _ in range(100):
            if int(codec.decode_number(await self.query(cmd), cmd)) >= count:
                break
            await asyncio.sleep(max(interval_s, 0.01))
        else:
            raise InstrumentError(f"{self.name}: buffer never reached {count} readings")
        await self.write("*WAI")
        cmd = codec.trace_data(count)
        v, t = codec.decode_trace(await self.query(cmd), cmd, count)
        return np.asarray(v, dtype=np.float64), np.asarray(t, dtype=np.float64)

    # ------------------------------------------------------------------ supervisor
    async def _read(self) -> tuple[float, bool]:
        v = codec.decode_number(await self.query(codec.READ), codec.READ)
        trip = codec.decode_bool(await self.query(codec.TRIP), codec.TRIP)
        self._last_v = v
        return v, trip

    def _record(self, t: float, step_id: int, i: float, v: float, q: float) -> None:
        self._seq += 1
        self._records.append((self._seq, t - self._t0, step_id, i, v, q, math.nan))

    async def _supervise(self, run: _Run) -> None:
        lim = self._limits
        assert lim is not None
        loop = asyncio.get_running_loop()
        try:
            idx = 0
            await self.write(codec.source_level(0.0))
            await self.write(codec.output(True))
            while 0 <= idx < len(run.steps):
                step = run.steps[idx]
                end = await self._step(run, step, lim, loop)
                run.ends.append(end)
                if end.reason == "safety":
                    run.state = ChannelState.fault
                    return
                if end.action == "abort" or end.action == "end_block":
                    break
                if end.action == "pause":
                    await self.write(codec.output(False))
                    run.state = ChannelState.paused
                    return
                if end.action == "goto":
                    cond = next(
                        e for e in step.ends if e.action == "goto" and e.quantity == end.reason
                    )
                    idx = cond.goto if cond.goto is not None else idx + 1
                else:
                    idx += 1
            run.state = ChannelState.done
        except InstrumentError as exc:
            run.state = ChannelState.fault
            run.fault = f"{type(exc).__name__}: {exc}"
        finally:
            if run.state != ChannelState.running:
                with contextlib.suppress(InstrumentError):
                    await asyncio.shield(self.write(codec.output(False)))
                self._last_i = 0.0

    async def _step(
        self, run: _Run, step: ChannelStep, lim: ChannelLimits, loop: asyncio.AbstractEventLoop
    ) -> StepEnd:
        i = step.current_A if step.mode == "cc" else 0.0
        run.step_id = step.step_id
        await self.write(codec.source_level(i))
        self._last_i = i
        t_step = 0.0  # step time, excluding pauses
        q_Ah = 0.0
        e_Wh = 0.0
        v0, _ = await self._read()
        v_prev = v0
        run.step_start = loop.time()
        self._record(loop.time(), step.step_id, i, v0, 0.0)
        last_rec_t, last_rec_v = 0.0, v0
        every = step.record.every_s
        while True:
            if not self._resume.is_set():
                await self.write(codec.output(False))
                self._last_i = 0.0  # the output is off: status says so
                run.state = ChannelState.paused
                await self._resume.wait()
                run.state = ChannelState.running
                await self.write(codec.output(True))
                self._last_i = i
            dt = self.poll_s
            if step.max_duration_s is not None:
                dt = min(dt, max(1e-3, step.max_duration_s - t_step))
            await asyncio.sleep(dt)
            v, trip = await self._read()
            t_step += dt
            q_Ah += i * dt / 3600.0
            e_Wh += i * 0.5 * (v + v_prev) * dt / 3600.0
            reason, action = self._ended(step, lim, t_step, v, v_prev, dt, q_Ah, v0, trip)
            if reason == "safety":
                run.fault = (
                    f"voltage compliance tripped at {v:.4f} V (VLIM {lim.v_max_V} V)"
                    if trip
                    else f"voltage {v:.4f} V outside [{lim.v_min_V}, {lim.v_max_V}] V"
                )
            v_prev = v
            due = every is not None and t_step - last_rec_t >= every - 1e-9
            moved = step.record.dV_V is not None and abs(v - last_rec_v) >= step.record.dV_V
            if reason is not None or due or moved:
                self._record(loop.time(), step.step_id, i, v, q_Ah)
                last_rec_t, last_rec_v = t_step, v
            if reason is not None:
                return StepEnd(step.step_id, reason, action, t_step, q_Ah, e_Wh, v)

    @staticmethod
    def _ended(
        step: ChannelStep, lim: ChannelLimits, t: float, v: float, v_prev: float, dt: float,
        q: float, v0: float, trip: bool,
    ) -> tuple[str | None, Any]:  # fmt: skip
        if trip or not (lim.v_min_V <= v <= lim.v_max_V):
            return "safety", "abort"
        for e in step.ends:
            if _hit(e, t, v, abs(step.current_A if step.mode == "cc" else 0.0), q,
                    abs(v - v_prev) / dt, v0):  # fmt: skip
                return e.quantity, e.action
        if step.max_duration_s is not None and t >= step.max_duration_s - 1e-9:
            return "max_duration", "next"
        return None, None


def _hit(e: EndCondition, t: float, v: float, i: float, q: float, dvdt: float, v0: float) -> bool:
    x = {"voltage": v, "current": i, "time": t, "capacity": abs(q), "dvdt": dvdt}.get(e.quantity)
    if x is None:
        return False  # refused in start_block
    if e.op == ">=":
        return x >= e.value
    if e.op == "<=":
        return x <= e.value
    start = v0 if e.quantity == "voltage" else 0.0
    return (x >= e.value) if start < e.value else (x <= e.value)

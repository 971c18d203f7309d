"""A simulated Keithley 2450 source-measure unit used as a galvanostat.

The SMU sources current into a :class:`~simulators.engine.ChannelEngine`'s cell and
measures voltage. Its own protection is the voltage compliance (``:SOUR:CURR:VLIM``):
charging, the cell can never be driven above it - the source then holds the compliance
voltage and the current falls (the engine runs that as CC then CV at the limit), and
``:SOUR:CURR:VLIM:TRIP?`` reads 1. Every change of level, limit or output re-plans the
engine from that instant.

Commands (short/long forms, any case, ``;`` compounds, relative headers): ``*IDN?``,
``*RST``, ``*CLS``, ``*WAI``, ``*OPC?``, ``SYST:ERR?``, ``:SOUR:FUNC CURR``,
``:SOUR:CURR[:LEV]``, ``:SOUR:CURR:VLIM``, ``:SOUR:CURR:VLIM:TRIP?``,
``:SENS:FUNC 'VOLT'``, ``:READ?``, ``:OUTP ON|OFF``, ``TRIG:LOAD "SimpleLoop",N,delay,
"defbuffer1"``, ``INIT``, ``ABOR``, ``TRAC:ACT?``, ``TRAC:DATA? s,e,"defbuffer1",READ,REL[,SOUR]``.
Errors go to the queue with SCPI's standard codes; queries that fail answer nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from labrig.simulators.engine import ChannelEngine, EngineError, SimRecord, SimStep

from .scpi import Command, Pattern, ScpiError, match, parse_units, split_line, split_params

__all__ = ["Smu2450"]

I_MAX_A = 1.05
#: simulated seconds the engine plans ahead per setting (chained while sourcing)
PLAN_SPAN_S = 6 * 3600.0
V_MAX_V = 210.0
_BLOCK_IDS = itertools.count(1 << 41)
_P = Pattern.parse
_TABLE: tuple[tuple[str, Pattern], ...] = (
    ("func", _P("SOURce:FUNCtion[:MODE]")),
    ("vlim_trip", _P("SOURce:CURRent:VLIMit:TRIPped")),
    ("vlim", _P("SOURce:CURRent:VLIMit[:LEVel]")),
    ("level", _P("SOURce:CURRent[:LEVel][:IMMediate][:AMPLitude]")),
    ("sens_func", _P("SENSe:FUNCtion[:ON]")),
    ("read", _P("READ")),
    ("output", _P("OUTPut[:STATe]")),
    ("trig_load", _P("TRIGger:LOAD")),
    ("init", _P("INITiate[:IMMediate]")),
    ("abort", _P("ABORt")),
    ("trace_data", _P("TRACe:DATA")),
    ("trace_clear", _P("TRACe:CLEar")),
    ("trace_actual", _P("TRACe:ACTual")),
    ("syst_err", _P("SYSTem:ERRor[:NEXT]")),
)


def _number(text: str, lo: float, hi: float) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ScpiError(-104, "Data type error") from None
    if not math.isfinite(x):
        raise ScpiError(-104, "Data type error")
    if not lo <= x <= hi:
        raise ScpiError(-222, "Data out of range")
    return x


def _fmt(x: float) -> str:
    return f"{x:+.6E}"


@dataclass
class _Acquisition:
    count: int
    delay_s: float
    readings: list[tuple[float, float, float]] = field(default_factory=list)  # t, V, I
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Spawn(Protocol):
    """Where the SMU runs background work: the serving shell's ``SimServer.start``."""

    def __call__(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]: ...


class Smu2450:
    """The instrument state machine; :meth:`execute` runs one program line.

    A triggered acquisition (``INIT``) runs as a task through :attr:`spawn`, which the
    server that serves the SMU sets; without one, ``INIT`` is refused.
    """

    def __init__(
        self,
        engine: ChannelEngine,
        *,
        now: Callable[[], float] | None = None,
        speed: float = 1.0,
        serial_number: str = "04511234",
    ) -> None:
        self.engine = engine
        self._now = now
        self.speed = speed
        self.serial_number = serial_number
        self.errors: deque[tuple[int, str]] = deque(maxlen=20)
        self.commands = 0
        self._acq: _Acquisition | None = None
        self._acq_task: asyncio.Task[None] | None = None
        self._trigger: tuple[int, float] | None = None
        self.spawn: Spawn | None = None
        self.reset()

    def now(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    def reset(self) -> None:
        self.source_func = "CURR"
        self.sense_func = "VOLT"
        self.level_A = 0.0
        self.vlim_V = 21.0
        self.output = False
        self._trigger = None
        if hasattr(self, "_block") and self._block is not None:
            self.engine.stop(self.now())
        self._block: int | None = None

    # ------------------------------------------------------------------ physics
    def _replan(self) -> None:
        t = self.now()
        self.engine.stop(t)
        self._block = None
        if self.output:
            self._plan_from(t)

    def _plan_from(self, t: float) -> None:
        """Start the engine sourcing the present settings at ``t`` for one plan span.

        Spans are bounded (the engine computes a block eagerly) and chained by
        :meth:`reading` when one runs out while the output is still on.
        """
        with contextlib.suppress(EngineError):
            self.engine.set_limits(0.0, V_MAX_V, I_MAX_A * 1.01)
        bid = next(_BLOCK_IDS)
        rec = SimRecord(every_s=None)  # the SMU reads live values, not engine records
        span = PLAN_SPAN_S
        if self.level_A > 0:
            step = SimStep(bid, "cccv", "smu", current_A=self.level_A, voltage_V=self.vlim_V,
                           record=rec, max_duration_s=span)  # fmt: skip
        elif self.level_A < 0:
            step = SimStep(bid, "cc", "smu", current_A=self.level_A, record=rec,
                           max_duration_s=span)  # fmt: skip
        else:
            step = SimStep(bid, "rest", "smu", record=rec, max_duration_s=span)
        try:
            self.engine.start_block(bid, [step], t)
        except EngineError as exc:
            self.output = False
            raise ScpiError(-221, f"Settings conflict; {exc}") from None
        self._block = bid

    def reading(self) -> tuple[float, float]:
        """(voltage, current) the SMU measures now."""
        now = self.now()
        st = self.engine.status(now)
        while self.output and st.state == "done" and st.block_id == self._block:
            end = self.engine.end_time()
            if end is None or end >= now:
                break
            self._plan_from(end)  # the span ran out: keep sourcing from its end
            st = self.engine.status(now)
        return st.voltage_V, (st.current_A if self.output else 0.0)

    def tripped(self) -> bool:
        if not self.output or self.level_A <= 0:
            return False
        v, i = self.reading()
        return v >= self.vlim_V * (1 - 1e-6) or i < self.level_A * (1 - 1e-3)

    # ------------------------------------------------------------------ commands
    async def execute(self, line: str) -> str | None:
        """Run one program line; the reply line (without terminator) if it had queries."""
        replies: list[str] = []
        try:
            units = split_line(line)
            cmds, _ = parse_units(units, ())  # every program line starts at the root
        except ScpiError as exc:
            self.errors.append((exc.code, exc.text))
            return None
        for cmd in cmds:
            self.commands += 1
            try:
                out = await self._one(cmd)
            except ScpiError as exc:
                self.errors.append((exc.code, exc.text))
                continue
            if out is not None:
                replies.append(out)
        return ";".join(replies) if replies else None

    async def _one(self, cmd: Command) -> str | None:
        if cmd.common is not None:
            return await self._common(cmd)
        name = next((n for n, p in _TABLE if match(p, cmd.header)), None)
        if name is None:
            raise ScpiError(-113, "Undefined header")
        args = split_params(cmd.params)
        handler = getattr(self, f"_cmd_{name}")
        result: str | None = handler(cmd.query, args)
        return result

    async def _common(self, cmd: Command) -> str | None:
        c = cmd.common
        if c == "*IDN" and cmd.query:
            return f"KEITHLEY INSTRUMENTS,MODEL 2450,{self.serial_number},1.7.12b"
        if c == "*RST" and not cmd.query:
            self.reset()
            self.engine.stop(self.now())
            return None
        if c == "*CLS" and not cmd.query:
            self.errors.clear()
            return None
        if c == "*WAI" and not cmd.query:
            if self._acq is not None:
                await self._acq.done.wait()
            return None
        if c == "*OPC" and cmd.query:
            if self._acq is not None:
                await self._acq.done.wait()
            return "1"
        raise ScpiError(-113, "Undefined header")

    @staticmethod
    def _one_arg(query: bool, args: list[str]) -> str | None:
        if query:
            return None
        if len(args) != 1:
            raise ScpiError(-109 if not args else -108, "Missing parameter" if not args
                            else "Parameter not allowed")  # fmt: skip
        return args[0]

    def _cmd_func(self, query: bool, args: list[str]) -> str | None:
        arg = self._one_arg(query, args)
        if arg is None:
            return self.source_func
        a = arg.upper()
        if a not in ("CURR", "CURRENT"):
            raise ScpiError(-224, "Illegal parameter value")  # this unit is a galvanostat
        self.source_func = "CURR"
        return None

    def _cmd_level(self, query: bool, args: list[str]) -> str | None:
        arg = self._one_arg(query, args)
        if arg is None:
            return _fmt(self.level_A)
        self.level_A = _number(arg, -I_MAX_A, I_MAX_A)
        if self.output:
            self._replan()
        return None

    def _cmd_vlim(self, query: bool, args: list[str]) -> str | None:
        arg = self._one_arg(query, args)
        if arg is None:
            return _fmt(self.vlim_V)
        self.vlim_V = _number(arg, 0.02, V_MAX_V)
        if self.output:
            self._replan()
        return None

    def _cmd_vlim_trip(self, query: bool, args: list[str]) -> str | None:
        if not query or args:
            raise ScpiError(-113, "Undefined header")
        return "1" if self.tripped() else "0"

    def _cmd_sens_func(self, query: bool, args: list[str]) -> str | None:
        arg = self._one_arg(query, args)
        if arg is None:
            return f'"{self.sense_func}:DC"'
        a = arg.strip("\"'").upper()
        if a not in ("VOLT", "VOLT:DC", "VOLTAGE", "VOLTAGE:DC"):
            raise ScpiError(-224, "Illegal parameter value")
        self.sense_func = "VOLT"
        return None

    def _cmd_read(self, query: bool, args: list[str]) -> str | None:
        if not query:
            raise ScpiError(-113, "Undefined header")
        if not self.output:
            # the 2450 turns the output on to measure; as a galvanostat host we refuse
            raise ScpiError(-221, "Settings conflict; output is off")
        return _fmt(self.reading()[0])

    def _cmd_output(self, query: bool, args: list[str]) -> str | None:
        arg = self._one_arg(query, args)
        if arg is None:
            return "1" if self.output else "0"
        a = arg.upper()
        if a in ("ON", "1"):
            on = True
        elif a in ("OFF", "0"):
            on = False
        else:
            raise ScpiError(-224, "Illegal parameter value")
        if on != self.output:
            self.output = on
            self._replan()
        return None

    def _cmd_trig_load(self, query: bool, args: list[str]) -> str | None:
        if query or not args:
            raise ScpiError(-109, "Missing parameter")
        if args[0].strip("\"'") != "SimpleLoop" or not 2 <= len(args) <= 4:
            raise ScpiError(-224, "Illegal parameter value")
        n = _number(args[1], 1, 100_000)
        delay = _number(args[2], 0.0, 10_000.0) if len(args) > 2 else 0.0
        if len(args) > 3 and args[3].strip("\"'") != "defbuffer1":
            raise ScpiError(-224, "Illegal parameter value")
        self._trigger = (int(n), delay)
        return None

    def _cmd_init(self, query: bool, args: list[str]) -> str | None:
        if query or args:
            raise ScpiError(-113, "Undefined header")
        if self._trigger is None:
            raise ScpiError(-221, "Settings conflict; no trigger model loaded")
        if not self.output:
            raise ScpiError(-221, "Settings conflict; output is off")
        if self.spawn is None:
            raise ScpiError(-221, "Settings conflict; trigger model not available")
        self.stop_acquisition()
        n, delay = self._trigger
        acq = self._acq = _Acquisition(n, delay)
        self._acq_task = self.spawn(self._acquire(acq), name="k2450-sim-acquisition")
        return None

    async def _acquire(self, acq: _Acquisition) -> None:
        try:
            for k in range(acq.count):
                if k and acq.delay_s > 0:
                    await asyncio.sleep(acq.delay_s / self.speed)
                v, i = self.reading()
                acq.readings.append((self.now(), v, i))
        except ScpiError as exc:
            self.errors.append((exc.code, exc.text))
        finally:
            acq.done.set()

    def stop_acquisition(self) -> None:
        if self._acq_task is not None and not self._acq_task.done():
            self._acq_task.cancel()
        self._acq_task = None

    async def aclose(self) -> None:
        task = self._acq_task
        self.stop_acquisition()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _cmd_abort(self, query: bool, args: list[str]) -> str | None:
        self.stop_acquisition()
        return None

    def _cmd_trace_clear(self, query: bool, args: list[str]) -> str | None:
        self._acq = None
        return None

    def _cmd_trace_data(self, query: bool, args: list[str]) -> str | None:
        if not query or len(args) < 2:
            raise ScpiError(-109, "Missing parameter")
        start, end = int(_number(args[0], 1, 1e6)), int(_number(args[1], 1, 1e6))
        if len(args) > 2 and args[2].strip("\"'") != "defbuffer1":
            raise ScpiError(-224, "Illegal parameter value")
        elements = [a.upper() for a in args[3:]] or ["READ"]
        have = self._acq.readings if self._acq is not None else []
        if end < start or end > len(have):
            raise ScpiError(-222, "Data out of range")
        t0 = have[0][0]
        out: list[str] = []
        for t, v, i in have[start - 1 : end]:
            for e in elements:
                if e in ("READ", "READING"):
                    out.append(_fmt(v))
                elif e in ("REL", "RELATIVE"):
                    out.append(_fmt(t - t0))
                elif e in ("SOUR", "SOURCE"):
                    out.append(_fmt(i))
                else:
                    raise ScpiError(-224, "Illegal parameter value")
        return ",".join(out)

    def _cmd_trace_actual(self, query: bool, args: list[str]) -> str | None:
        if not query or len(args) > 1:
            raise ScpiError(-113, "Undefined header")
        if args and args[0].strip("\"'") != "defbuffer1":
            raise ScpiError(-224, "Illegal parameter value")
        return str(len(self._acq.readings) if self._acq is not None else 0)

    def _cmd_syst_err(self, query: bool, args: list[str]) -> str | None:
        if not query:
            raise ScpiError(-113, "Undefined header")
        if not self.errors:
            return '0,"No error"'
        code, text = self.errors.popleft()
        return f'{code},"{text}"'

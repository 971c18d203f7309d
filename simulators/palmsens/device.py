"""A simulated EmStat: MethodSCRIPT communication commands and a script runner.

Input is line-based (``\\n``; ``\\r`` ignored). Idle, the device answers ``t`` (two lines
of firmware text, the second ending ``*``), ``i`` (serial number), ``v`` (MethodSCRIPT
version) and ``e`` (collects script lines up to an empty line, then echoes ``e`` and
runs it, or answers ``e!XXXX: Line L, Col C``); ``Z`` with nothing running is
``Z!0006``; other commands ``<c>!0003``. While a script runs, ``Z`` is echoed in the
output stream and aborts: the running measurement loop closes (``*``), ``on_finished:``
runs, and the empty line follows. A run-time error is ``!XXXX: Line L`` and skips
``on_finished:``.

Physics comes from a :class:`~simulators.engine.ChannelEngine` passed in, so the same
simulated cell can sit on a cycler channel and on this potentiostat. EIS takes about three
periods per frequency (at least 0.1 s); OCP and CP sample every interval. Time is the
injected clock (the event loop's, virtual in dry runs); waits are ``asyncio`` sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Callable

import numpy as np

from labrig.simulators.engine import ChannelEngine, EngineError, SimStep

from .script import (
    CODE_BUSY,
    CODE_OVERLOAD,
    CODE_SYNTAX,
    CODE_UNKNOWN_COMMAND,
    MeasLoop,
    Program,
    ScriptSyntax,
    Statement,
    encode_value,
    parse_script,
)

__all__ = ["MethodScriptDevice"]

_TECHNIQUE = {"eis": 0x000D, "ocp": 0x000B, "cp": 0x000A}  # cp's number: check
_OUT_TYPES = {"eis": ("dc", "cc", "cd"), "ocp": ("ab",), "cp": ("ab", "ba")}
_MAX_SCRIPT_LINES = 2000
_BLOCK_IDS = itertools.count(1 << 40)  # far from the ids a cycler host uses


class _RuntimeFault(Exception):
    def __init__(self, code: int, line: int) -> None:
        super().__init__(f"!{code:04X}: Line {line}")
        self.code, self.line = code, line


class MethodScriptDevice:
    """The device behind the serial line. ``emit`` receives every output chunk."""

    def __init__(
        self,
        engine: ChannelEngine,
        *,
        now: Callable[[], float] | None = None,
        speed: float = 1.0,
        serial_number: str = "ES4SIM0001",
        firmware: str = "espico1.2 labrig-sim",
    ) -> None:
        self.engine = engine
        self._now = now
        self.speed = speed
        self.serial_number = serial_number
        self.firmware = firmware
        self.emit: Callable[[bytes], None] = lambda data: None
        self.cell_on = False
        self.set_e_V = 0.0
        self.scripts_run = 0
        self.aborts = 0
        self._inbuf = bytearray()
        self._loading: list[str] | None = None
        self._queue: asyncio.Queue[Program] = asyncio.Queue()
        self._running = False
        self._abort = asyncio.Event()

    def now(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------------ input
    def feed(self, data: bytes) -> None:
        """Bytes from the host."""
        self._inbuf += data
        while (idx := self._inbuf.find(b"\n")) >= 0:
            raw = bytes(self._inbuf[:idx]).rstrip(b"\r")
            del self._inbuf[: idx + 1]
            self._line(raw.decode("ascii", "replace"))
        if len(self._inbuf) > 4096:  # a runaway line: the device drops it
            self._inbuf.clear()

    def _line(self, line: str) -> None:
        if self._loading is not None:
            if line == "":
                lines, self._loading = self._loading, None
                self._load(lines)
            elif len(self._loading) >= _MAX_SCRIPT_LINES:
                self._loading = None
                self._out(f"e!{CODE_SYNTAX:04X}: Line {_MAX_SCRIPT_LINES}, Col 1\n")
            else:
                self._loading.append(line)
            return
        if line == "":
            return  # hosts send a bare line end to flush a half-sent command
        if self._running or not self._queue.empty():
            if line == "Z":
                self.aborts += 1
                self._out("Z\n")
                self._abort.set()
            else:
                self._out(f"{line[0]}!{CODE_BUSY:04X}\n")
            return
        if line == "t":
            self._out(f"t{self.firmware}\nR*\n")
        elif line == "i":
            self._out(f"i{self.serial_number}\n")
        elif line == "v":
            self._out("v0108\n")
        elif line == "e":
            self._loading = []
        elif line == "Z":
            self._out(f"Z!{CODE_BUSY:04X}\n")
        else:
            self._out(f"{line[0]}!{CODE_UNKNOWN_COMMAND:04X}\n")

    def _load(self, lines: list[str]) -> None:
        try:
            prog = parse_script(lines)
            _check_loops(prog)
        except ScriptSyntax as exc:
            self._out(f"e!{exc.code:04X}: Line {exc.line}, Col {exc.column}\n")
            return
        self._out("e\n")
        self._abort.clear()
        self._queue.put_nowait(prog)

    def _out(self, text: str) -> None:
        self.emit(text.encode("ascii"))

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        """Run scripts as they arrive, for ever (the server owns this task)."""
        while True:
            prog = await self._queue.get()
            self._running = True
            try:
                await self._execute(prog)
            finally:
                self._running = False
                self.scripts_run += 1

    async def _execute(self, prog: Program) -> None:
        values: dict[str, tuple[str, float]] = {}
        try:
            for item in prog.main:
                if self._abort.is_set():
                    break
                if isinstance(item, MeasLoop):
                    await self._meas_loop(item, values)
                else:
                    await self._statement(item)
        except _RuntimeFault as exc:
            self._out(f"!{exc.code:04X}: Line {exc.line}\n")
            return  # a run-time error skips on_finished
        for st in prog.on_finished:
            await self._statement(st)
        self._out("\n")

    async def _statement(self, st: Statement) -> None:
        if st.name == "cell_on":
            self.cell_on = True
        elif st.name == "cell_off":
            self.cell_on = False
        elif st.name == "set_e":
            self.set_e_V = st.numbers[0]
        elif st.name == "wait":
            await self._wait(st.numbers[0])
        # ranges, modes, bandwidth: accepted; the simulated cell needs no ranging

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` of simulated time; True if an abort cut it short."""
        if seconds <= 0:
            return self._abort.is_set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds / self.speed):
                await self._abort.wait()
        return self._abort.is_set()

    async def _meas_loop(self, loop: MeasLoop, values: dict[str, tuple[str, float]]) -> None:
        self._out(f"M{_TECHNIQUE[loop.technique]:04X}\n")
        if loop.technique == "eis":
            await self._eis(loop, values)
        elif loop.technique == "ocp":
            await self._ocp(loop, values)
        else:
            await self._cp(loop, values)
        self._out("*\n")

    def _package(self, loop: MeasLoop, values: dict[str, tuple[str, float]]) -> None:
        parts = []
        for st in loop.body:
            if st.name == "pck_add":
                vtype, v = values.get(st.args[0], ("aa", math.nan))
                parts.append(f"{vtype}{encode_value(v)}")
        if parts:
            self._out("P" + ";".join(parts) + "\n")

    def _assign(self, loop: MeasLoop, values: dict[str, tuple[str, float]], *xs: float) -> None:
        for name, vtype, x in zip(loop.outputs, _OUT_TYPES[loop.technique], xs, strict=True):
            values[name] = (vtype, float(x))

    async def _eis(self, loop: MeasLoop, values: dict[str, tuple[str, float]]) -> None:
        _amp, f0, f1, n_pts, _dc = loop.numbers
        n = int(n_pts)
        freqs = np.geomspace(f0, f1, n) if n > 1 else np.array([f0])
        self.cell_on = True
        for f in freqs:
            if await self._wait(max(3.0 / float(f), 0.1)):
                return
            try:
                z = complex(self.engine.measure_impedance(np.array([f]), self.now())[0])
            except EngineError:
                raise _RuntimeFault(CODE_OVERLOAD, loop.line) from None
            self._assign(loop, values, float(f), z.real, z.imag)
            self._package(loop, values)

    async def _ocp(self, loop: MeasLoop, values: dict[str, tuple[str, float]]) -> None:
        interval, run = loop.numbers
        self.cell_on = False
        for _ in range(math.floor(run / interval + 1e-9)):
            if await self._wait(interval):
                return
            try:
                v = self.engine.ocv(self.now())
            except EngineError:
                raise _RuntimeFault(CODE_OVERLOAD, loop.line) from None
            self._assign(loop, values, v)
            self._package(loop, values)

    async def _cp(self, loop: MeasLoop, values: dict[str, tuple[str, float]]) -> None:
        current, interval, run = loop.numbers
        block = next(_BLOCK_IDS)
        step = SimStep(block, "cc", "cp", current_A=current, max_duration_s=run + interval)
        try:
            self.engine.start_block(block, [step], self.now())
        except EngineError:
            raise _RuntimeFault(CODE_OVERLOAD, loop.line) from None
        self.cell_on = True
        try:
            for _ in range(math.floor(run / interval + 1e-9)):
                if await self._wait(interval):
                    return
                st = self.engine.status(self.now())
                if st.state == "fault":
                    raise _RuntimeFault(CODE_OVERLOAD, loop.line)
                self._assign(loop, values, st.voltage_V, st.current_A)
                self._package(loop, values)
        finally:
            self.engine.stop(self.now())


def _check_loops(prog: Program) -> None:
    """Parameter checks the firmware makes when it loads a measurement loop."""
    for item in prog.main:
        if not isinstance(item, MeasLoop):
            continue
        x = item.numbers
        ok = True
        if item.technique == "eis":
            amp, f0, f1, n, _ = x
            ok = amp > 0 and f0 > 0 and f1 > 0 and n >= 1 and n == int(n) and n <= 10_000
        elif item.technique == "ocp":
            ok = x[0] > 0 and x[1] >= x[0]
        elif item.technique == "cp":
            ok = x[1] > 0 and x[2] >= x[1]
        if not ok:
            raise ScriptSyntax(CODE_SYNTAX, item.line, 1)

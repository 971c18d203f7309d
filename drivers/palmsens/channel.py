"""PalmSens EmStat / Nexus over MethodSCRIPT: :class:`PalmSensChannel`.

A thin async shell over :mod:`.codec`: it writes a script, reads the output line by
line under a deadline, and feeds the lines to the pure :class:`ScriptDecoder`.

Deadlines: every line has its own deadline, ``timeout_s`` plus the longest time the
instrument may legitimately be silent (one EIS point takes about three periods of its
frequency; an OCP or CP point one interval). A late line means a stalled instrument:
the channel aborts (``Z``), switches the cell off under its own deadline, and raises
:class:`InstrumentTimeout`. Any reply outside the grammar raises
:class:`InstrumentProtocolError` with the command and the reply, after the same cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import (
    EisRequest,
    EisResult,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
)
from labrig.drivers.transport import Transport, TransportClosed, transport_from_url

from .codec import (
    Echo,
    LoopEnd,
    LoopStart,
    MethodScriptError,
    Package,
    ScriptDecoder,
    ScriptEnd,
    ScriptErrorLine,
    cell_off_script,
    cp_script,
    decode_error,
    eis_script,
    eis_segments,
    ocp_script,
    parse_firmware,
    parse_serial,
)

__all__ = ["CpResult", "PalmSensChannel", "ScriptOutput"]

BAUDRATE = 230400
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ScriptOutput:
    """Packages of one script, grouped by measurement loop, in order."""

    loops: tuple[tuple[int | None, tuple[Package, ...]], ...]

    def packages(self) -> list[Package]:
        return [p for _, pk in self.loops for p in pk]


@dataclass(frozen=True, slots=True)
class CpResult:
    """A chronopotentiometry run: sample times (s from start), E (V) and I (A)."""

    time_s: FloatArray
    voltage_V: FloatArray
    current_A: FloatArray


class PalmSensChannel:
    """One MethodSCRIPT potentiostat channel; an :class:`ImpedanceChannel`.

    ``PalmSensChannel.from_url("serial:///dev/ttyUSB0?baudrate=230400")``, then
    ``async with ch: await ch.measure_eis(req)``. Settings that differ between models
    (PGStat modes, current ranges) are constructor arguments.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str = "palmsens",
        timeout_s: float = 3.0,
        eis_pgstat_mode: int = 3,
        dc_pgstat_mode: int = 2,
        cp_pgstat_mode: int = 2,
        eis_current_range_A: tuple[float, float] = (1e-9, 0.01),
        cp_current_range_A: float = 0.01,
        ocp_interval_s: float = 0.1,
        ocv_before_eis_s: float = 1.0,
    ) -> None:
        self.transport = transport
        self._name = name
        self.timeout_s = timeout_s
        self.eis_pgstat_mode = eis_pgstat_mode
        self.dc_pgstat_mode = dc_pgstat_mode
        self.cp_pgstat_mode = cp_pgstat_mode
        self.eis_current_range_A = eis_current_range_A
        self.cp_current_range_A = cp_current_range_A
        self.ocp_interval_s = ocp_interval_s
        self.ocv_before_eis_s = ocv_before_eis_s
        self.firmware: str | None = None
        self.serial_number: str | None = None
        self.scripts_run = 0
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> PalmSensChannel:
        """``from_url("serial:///dev/ttyACM0?baudrate=230400", name="eis")``.

        ``manipulators`` and ``backoff`` go to the transport, the rest to the channel.
        """
        tkw = {k: kwargs.pop(k) for k in ("manipulators", "backoff") if k in kwargs}
        return cls(transport_from_url(url, **tkw), **kwargs)

    @property
    def name(self) -> str:
        return self._name

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> None:
        """Open the link, stop whatever may still run, and read the identity."""
        await self.transport.open()
        async with self._lock:
            await self._sync()
        await self.identify()

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> PalmSensChannel:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.safe_state()
        except InstrumentError:
            pass  # closing must not mask the error that brought us here
        finally:
            await self.close()

    async def identify(self) -> tuple[str, str]:
        """``(firmware, serial number)`` from ``t`` and ``i``."""
        async with self._lock:
            dl = self.transport.deadline(self.timeout_s)
            await self.transport.write(b"t\n", dl)
            l1 = await self.transport.read_until(b"\n", dl)
            l2 = await self.transport.read_until(b"\n", dl)
            self.firmware = parse_firmware(l1, l2)
            dl = self.transport.deadline(self.timeout_s)
            await self.transport.write(b"i\n", dl)
            self.serial_number = parse_serial(await self.transport.read_until(b"\n", dl))
        return self.firmware, self.serial_number

    # ------------------------------------------------------------------ ImpedanceChannel
    async def measure_eis(self, request: EisRequest) -> EisResult:
        """Potentiostatic EIS at the OCV (measured first) or at ``bias_V``."""
        if request.amplitude_A is not None or request.bias == "current":
            raise ValueError(
                f"{self.name}: galvanostatic EIS is not supported by this driver "
                "(give amplitude_V and a voltage or OCV bias)"
            )
        if request.amplitude_V is None:
            raise ValueError(f"{self.name}: EIS needs amplitude_V")
        segments = eis_segments(request.frequencies_Hz)
        if request.bias == "voltage":
            if request.bias_V is None or not math.isfinite(request.bias_V):
                raise ValueError(f"{self.name}: bias 'voltage' needs a finite bias_V")
            dc = float(request.bias_V)
        else:
            dc = await self.measure_ocv(self.ocv_before_eis_s)
        script = eis_script(
            segments,
            amplitude_V=request.amplitude_V,
            dc_V=dc,
            pgstat_mode=self.eis_pgstat_mode,
            current_range_A=self.eis_current_range_A,
        )
        slowest = max(max(3.0 / s.f_end_Hz, 3.0 / s.f_start_Hz, 0.1) for s in segments)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await self.run_script(script, silence_s=2.0 * slowest)
        pk = out.packages()
        want = len(request.frequencies_Hz)
        if len(pk) != want:
            raise InstrumentProtocolError(
                f"EIS returned {len(pk)} points for {want} frequencies",
                command=script[:300],
                reply=f"{len(pk)} packages",
            )
        try:
            f = np.array([p.get("dc") for p in pk], dtype=np.float64)
            zr = np.array([p.get("cc") for p in pk], dtype=np.float64)
            zi = np.array([p.get("cd") for p in pk], dtype=np.float64)
        except KeyError as exc:
            raise InstrumentProtocolError(
                f"EIS package lacks variable {exc.args[0]!r}", command=script[:300]
            ) from None
        asked = np.asarray(request.frequencies_Hz, dtype=np.float64)
        if not np.allclose(f, asked, rtol=1e-3, atol=0.0):
            raise InstrumentProtocolError(
                "EIS frequencies differ from those requested",
                command=script[:300],
                reply=repr(f[:10].tolist()),
            )
        return EisResult(
            frequency_Hz=f,
            z_real_ohm=zr,
            z_imag_ohm=zi,
            dc_voltage_V=dc,
            duration_s=loop.time() - t0,
        )

    async def measure_ocv(self, duration_s: float) -> float:
        """Open-circuit voltage: the mean of the last tenth of ``duration_s`` of samples."""
        if not math.isfinite(duration_s) or duration_s <= 0:
            raise ValueError(f"{self.name}: OCV duration must be > 0 s, got {duration_s!r}")
        interval = min(self.ocp_interval_s, duration_s)
        script = ocp_script(interval, duration_s, pgstat_mode=self.dc_pgstat_mode)
        out = await self.run_script(script, silence_s=2.0 * interval)
        try:
            v = [p.get("ab") for p in out.packages()]
        except KeyError:
            raise InstrumentProtocolError(
                "OCP package lacks the potential (ab)", command=script[:300]
            ) from None
        v = [x for x in v if math.isfinite(x)]
        if not v:
            raise InstrumentProtocolError("OCP returned no valid potential", command=script[:300])
        tail = v[-max(1, len(v) // 10) :]
        return float(np.mean(tail))

    async def measure_cp(self, current_A: float, duration_s: float, interval_s: float) -> CpResult:
        """Chronopotentiometry: hold ``current_A`` for ``duration_s``, sample every interval."""
        script = cp_script(
            current_A,
            interval_s,
            duration_s,
            pgstat_mode=self.cp_pgstat_mode,
            current_range_A=self.cp_current_range_A,
        )
        out = await self.run_script(script, silence_s=2.0 * interval_s)
        pk = out.packages()
        try:
            e = np.array([p.get("ab") for p in pk], dtype=np.float64)
            i = np.array([p.get("ba") for p in pk], dtype=np.float64)
        except KeyError as exc:
            raise InstrumentProtocolError(
                f"CP package lacks variable {exc.args[0]!r}", command=script[:300]
            ) from None
        t = interval_s * np.arange(1, len(pk) + 1, dtype=np.float64)
        return CpResult(t, e, i)

    async def safe_state(self) -> None:
        """Abort any script (``Z``) and switch the cell off, under its own deadline.

        Shielded, so an outer cancel cannot skip it half-way.
        """
        await asyncio.shield(self._safe_state())

    async def _safe_state(self) -> None:
        async with self._lock:
            if not self.transport.is_open:
                await self.transport.reconnect(self.timeout_s * 3)
            await self._sync()
            await self._run_locked(cell_off_script(), silence_s=0.0)

    # ------------------------------------------------------------------ scripts
    async def run_script(self, script: str, *, silence_s: float = 0.0) -> ScriptOutput:
        """Run ``script`` (``e`` ... empty line) and return its packages.

        ``silence_s`` is how long the instrument may be quiet between two lines beyond
        ``timeout_s``. On a timeout or a protocol error the instrument is aborted and its
        cell switched off before the error propagates.
        """
        async with self._lock:
            try:
                return await self._run_locked(script, silence_s=silence_s)
            except (InstrumentTimeout, InstrumentProtocolError, TransportClosed):
                await asyncio.shield(self._recover())
                raise
            except MethodScriptError as exc:
                if exc.during_run:  # skipped on_finished: the cell may still be on
                    await asyncio.shield(self._recover())
                raise

    async def _recover(self) -> None:
        try:
            if not self.transport.is_open:
                await self.transport.reconnect(self.timeout_s * 3)
            await self._sync()
            await self._run_locked(cell_off_script(), silence_s=0.0)
        except InstrumentError:
            pass  # the original error is what the caller must see

    async def _run_locked(self, script: str, *, silence_s: float) -> ScriptOutput:
        data = script.encode("ascii")
        await self.transport.write(data, self.transport.deadline(self.timeout_s))
        self.scripts_run += 1
        dec = ScriptDecoder()
        loops: list[tuple[int | None, list[Package]]] = []
        current: list[Package] | None = None
        acked = False
        line_timeout = self.timeout_s + silence_s
        while not dec.done:
            raw = await self.transport.read_until(b"\n", self.transport.deadline(line_timeout))
            try:
                events = dec.feed(raw)
            except InstrumentProtocolError as exc:
                exc.command = data[:300]
                raise
            for ev in events:
                if not acked:
                    if isinstance(ev, ScriptErrorLine):
                        raise MethodScriptError(ev.code, ev.detail, command=script, reply=ev.raw)
                    if ev != Echo("e"):
                        raise InstrumentProtocolError(
                            "script not acknowledged with 'e'", command=data[:300], reply=raw
                        )
                    acked = True
                    continue
                if isinstance(ev, ScriptErrorLine):
                    await self._drain_after_error()
                    raise MethodScriptError(
                        ev.code, ev.detail, command=script, reply=ev.raw, during_run=True
                    )
                if isinstance(ev, LoopStart) and ev.kind == "M":
                    current = []
                    loops.append((ev.technique, current))
                elif isinstance(ev, LoopEnd) and ev.kind == "M":
                    current = None
                elif isinstance(ev, Package):
                    if current is None:
                        raise InstrumentProtocolError(
                            "data package outside a measurement loop",
                            command=data[:300],
                            reply=raw,
                        )
                    current.append(ev)
                elif isinstance(ev, Echo | ScriptEnd | LoopStart | LoopEnd):
                    pass
        return ScriptOutput(tuple((t, tuple(p)) for t, p in loops))

    async def _drain_after_error(self) -> None:
        # some firmware sends the closing empty line after a run-time error, some not
        with contextlib.suppress(InstrumentTimeout):
            await self.transport.read_until(b"\n", self.transport.deadline(0.2))

    async def _sync(self) -> None:
        """Flush a half-sent command, abort a running script, read up to its end."""
        dl = self.transport.deadline(self.timeout_s)
        await self.transport.write(b"\nZ\n", dl)
        while True:
            line = await self.transport.read_until(b"\n", dl)
            text = line.rstrip(b"\r\n").translate(None, b"\x11\x13")
            if text == b"Z":
                break  # a script was running: it now ends with its empty line
            if text.startswith(b"Z!"):
                err = decode_error(text.decode("ascii", "replace"))
                if err is not None and err.code == 0x0006:
                    await asyncio.sleep(0.1)  # the device ignores commands ~50 ms after '!'
                    return
                raise InstrumentProtocolError(
                    "unexpected reply to abort", command=b"Z\n", reply=line
                )
            # anything before the Z answer is the tail of an earlier script: drop it
        # the aborted script finishes its loop and on_finished; wait for its empty line
        end = self.transport.deadline(self.timeout_s * 4)
        while True:
            line = await self.transport.read_until(b"\n", end)
            if line.rstrip(b"\r\n") == b"":
                return

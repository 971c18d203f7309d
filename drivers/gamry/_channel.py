"""A Gamry Interface 1000 (or Reference 600) channel through GamryCOM.

Impedance is measured one frequency at a time with GamryReadZ (``Measure(f, ac)``, then
``Zreal``/``Zimag``/``Zfreq`` once ``OnDataDone`` says the point is good), at the OCV
(measured first with the cell off) or at a DC voltage. OCV and chronopotentiometry are
acquisitions (GamryDtaqOcv, GamryDtaqChrono with a constant signal) whose points arrive
through ``OnDataAvailable`` and ``Cook``. All waiting is on the loop's clock: the
driver pumps the events that are due, then sleeps ``poll_s``.

Safe state: the cell switched off. Cycling runs host-side (:mod:`._cycler`): GamryCOM
holds no step programme, so the host ends steps from the cooked points.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from labrig.drivers.capabilities import (
    EisRequest,
    EisResult,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeout,
)

from ._com import ComBackend, ComCaller, GamryError
from ._cycler import HostCycler

__all__ = ["CHRONO_COLUMNS", "OCV_COLUMNS", "GamryChannel"]

#: columns Cook returns (GamryCOM documentation; check on the Framework version)
OCV_COLUMNS = ("Time", "Vf", "Vm", "Vsig", "Ach", "Overload", "StopTest")
CHRONO_COLUMNS = ("Time", "Vf", "Vu", "Im", "Q", "Vsig", "Ach", "IERange", "Overload", "StopTest")


class _DtaqSink:
    """Receives a Dtaq's events (on the COM thread, while events are pumped)."""

    def __init__(self, dtaq: Any, ncols: int) -> None:
        self.dtaq = dtaq
        self.columns: list[list[float]] = [[] for _ in range(ncols)]
        self.done = False

    def cook(self) -> None:
        while True:
            count, points = self.dtaq.Cook(1024)
            if not count:
                return
            for k, col in enumerate(points[: len(self.columns)]):
                self.columns[k].extend(float(x) for x in col[:count])

    def _IGamryDtaqEvents_OnDataAvailable(self, this: Any) -> None:
        self.cook()

    def _IGamryDtaqEvents_OnDataDone(self, this: Any) -> None:
        self.cook()
        self.done = True


class _ReadZSink:
    def __init__(self) -> None:
        self.status: int | None = None

    def _IGamryReadZEvents_OnDataAvailable(self, this: Any) -> None:
        pass  # the point's Lissajous samples: not kept

    def _IGamryReadZEvents_OnDataDone(self, this: Any, status: int) -> None:
        self.status = int(status)


class GamryChannel(HostCycler):
    """One Gamry potentiostat; an :class:`ImpedanceChannel` and a host-run cycler.

    ``section`` names the instrument in the Gamry device list (None: the only one);
    ``pstat_class`` is GamryPC6Pstat for newer Interface units, GamryPC5Pstat for older.
    """

    def __init__(
        self,
        backend: ComBackend,
        *,
        name: str = "gamry",
        section: str | None = None,
        pstat_class: str = "GamryCOM.GamryPC6Pstat",
        call_timeout_s: float = 10.0,
        poll_s: float = 0.2,
        max_frequency_Hz: float = 1e6,
        readz_retries: int = 10,
        ocv_sample_s: float = 1.0,
        ocv_before_eis_s: float = 10.0,
        supervise_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.supervise_s = supervise_s
        self.backend = backend
        self._name = name
        self.section = section
        self.pstat_class = pstat_class
        self.com = ComCaller(backend, name=name, timeout_s=call_timeout_s)
        self.poll_s = poll_s
        self.max_frequency_Hz = max_frequency_Hz
        self.readz_retries = readz_retries
        self.ocv_sample_s = ocv_sample_s
        self.ocv_before_eis_s = ocv_before_eis_s
        self.pstat: Any = None
        self.label = ""

    @property
    def name(self) -> str:
        return self._name

    @property
    def k(self) -> Any:
        return self.backend.constants

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> None:
        self._t0 = asyncio.get_running_loop().time()
        await self._start_tasks()
        try:
            await self._open()
        except BaseException:
            await self._end_tasks()
            raise

    async def _open(self) -> None:
        devices = await self.com(self.backend.create, "GamryCOM.GamryDeviceList", what="DeviceList")
        sections = list(await self.com(devices.EnumSections, what="EnumSections"))
        if not sections:
            raise GamryError(f"{self.name}: no Gamry instrument found (is it plugged in?)")
        section = self.section or sections[0]
        if self.section is None and len(sections) > 1:
            raise GamryError(f"{self.name}: several instruments ({', '.join(sections)}): "
                             "name one as option section")  # fmt: skip
        if section not in sections:
            raise GamryError(f"{self.name}: no instrument {section!r} (have {sections})")
        self.pstat = await self.com(self.backend.create, self.pstat_class, what=self.pstat_class)
        await self.com(self.pstat.Init, section, what="Init")
        await self.com(self.pstat.Open, what="Open")
        self.label = section
        await self._cell(False)

    async def close(self) -> None:
        try:
            with contextlib.suppress(InstrumentError):
                await self.safe_state()
            if self.pstat is not None:
                with contextlib.suppress(InstrumentError):
                    await self.com(self.pstat.Close, what="Close")
        finally:
            try:
                await self._end_tasks()
            finally:
                self.com.close()

    async def __aenter__(self) -> GamryChannel:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _cell(self, on: bool) -> None:
        await self.com(self.pstat.SetCell, self.k.CellOn if on else self.k.CellOff,
                       what="SetCell")  # fmt: skip

    async def safe_state(self) -> None:
        """Cell off (shielded; ends a running acquisition or block). Idempotent."""
        await self.stop_block()
        if self.pstat is not None:
            await asyncio.shield(self._cell(False))

    # ------------------------------------------------------------------ acquisitions
    async def acquire(
        self, dtaq_progid: str, columns: Sequence[str], *, mode: Any, level: float,
        duration_s: float, sample_s: float, cell_on: bool, stop: Any = None,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Run a Dtaq with a constant signal; its cooked columns by name.

        ``stop(columns) -> bool``, if given, is asked after every pump: True ends the
        acquisition early (the host's end conditions)."""
        k = self.k
        dtaq = await self.com(self.backend.create, dtaq_progid, what=dtaq_progid)
        if "Chrono" in dtaq_progid:
            await self.com(dtaq.Init, self.pstat, k.ChronoPot, what="Dtaq.Init")
        else:
            await self.com(dtaq.Init, self.pstat, what="Dtaq.Init")
        sig = await self.com(self.backend.create, "GamryCOM.GamrySignalConst", what="Signal")
        await self.com(sig.Init, self.pstat, level, duration_s, sample_s, mode, what="Signal.Init")
        await self.com(self.pstat.SetCtrlMode, mode, what="SetCtrlMode")
        await self.com(self.pstat.SetSignal, sig, what="SetSignal")
        await self.com(self.pstat.InitSignal, what="InitSignal")
        sink = _DtaqSink(dtaq, len(columns))
        conn = await self.com(self.backend.events, dtaq, sink, what="events")
        try:
            await self._cell(cell_on)
            await self.com(dtaq.Run, True, what="Dtaq.Run")
            end = asyncio.get_running_loop().time() + 2.0 * duration_s + 60.0
            while not sink.done:
                await self.com(self.backend.pump, 0.0, what="PumpEvents")
                if sink.done or (stop is not None and stop(sink.columns)):
                    break
                if asyncio.get_running_loop().time() > end:
                    raise InstrumentTimeout(f"{self.name}: {dtaq_progid} still running")
                await asyncio.sleep(max(self.poll_s, sample_s))  # a point per sample
            if not sink.done:
                await self.com(dtaq.Run, False, what="Dtaq.Run(False)")
                await self.com(self.backend.pump, 0.0, what="PumpEvents")
        finally:
            with contextlib.suppress(InstrumentError):
                await asyncio.shield(self._cell(False))
            del conn
        return {
            c: np.asarray(v, dtype=np.float64) for c, v in zip(columns, sink.columns, strict=True)
        }

    def _idle_or_refuse(self) -> None:
        run = self._run
        if run is not None and run.state.value == "running":
            raise InstrumentError(f"{self.name}: block {run.block_id} runs; no measurement now")

    async def measure_ocv(self, duration_s: float) -> float:
        """The mean of the last tenth of an OCV acquisition (cell off)."""
        self._idle_or_refuse()
        if not math.isfinite(duration_s) or duration_s <= 0:
            raise ValueError(f"{self.name}: OCV duration must be > 0 s, got {duration_s!r}")
        sample = min(self.ocv_sample_s, duration_s / 10.0)
        cols = await self.acquire("GamryCOM.GamryDtaqOcv", OCV_COLUMNS, mode=self.k.PstatMode,
                                  level=0.0, duration_s=duration_s, sample_s=sample,
                                  cell_on=False)  # fmt: skip
        v = cols["Vf"][np.isfinite(cols["Vf"])]
        if v.size == 0:
            raise InstrumentProtocolError(f"{self.name}: OCV returned no potential")
        return float(np.mean(v[-max(1, v.size // 10) :]))

    async def measure_cp(
        self, current_A: float, duration_s: float, interval_s: float
    ) -> dict[str, np.ndarray]:
        """Chronopotentiometry: ``current_A`` for ``duration_s``; Time, Vf, Im... columns."""
        return await self.acquire("GamryCOM.GamryDtaqChrono", CHRONO_COLUMNS,
                                  mode=self.k.GstatMode, level=current_A, duration_s=duration_s,
                                  sample_s=interval_s, cell_on=True)  # fmt: skip

    # ------------------------------------------------------------------ impedance
    async def measure_eis(self, request: EisRequest) -> EisResult:
        """Potentiostatic EIS, point by point with GamryReadZ, at the OCV or ``bias_V``."""
        self._idle_or_refuse()
        freqs = [float(f) for f in request.frequencies_Hz]
        if request.amplitude_A is not None or request.bias == "current":
            raise ValueError(f"{self.name}: galvanostatic EIS is not run by this driver "
                             "(give amplitude_V and a voltage or OCV bias)")  # fmt: skip
        if request.amplitude_V is None or not freqs:
            raise ValueError(f"{self.name}: EIS needs amplitude_V and frequencies")
        if any(not math.isfinite(f) or f <= 0 for f in freqs) or max(freqs) > self.max_frequency_Hz:
            raise ValueError(f"{self.name}: frequencies must be in (0, {self.max_frequency_Hz:g}] "
                             "Hz (option max_frequency_Hz)")  # fmt: skip
        if request.bias == "voltage":
            if request.bias_V is None or not math.isfinite(request.bias_V):
                raise ValueError(f"{self.name}: bias 'voltage' needs a finite bias_V")
            dc = float(request.bias_V)
        else:
            dc = await self.measure_ocv(self.ocv_before_eis_s)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = self.k
        readz = await self.com(self.backend.create, "GamryCOM.GamryReadZ", what="ReadZ")
        await self.com(readz.Init, self.pstat, what="ReadZ.Init")
        sink = _ReadZSink()
        conn = await self.com(self.backend.events, readz, sink, what="events")
        out: list[tuple[float, float, float, float]] = []
        try:
            await self.com(self.pstat.SetCtrlMode, k.PstatMode, what="SetCtrlMode")
            await self.com(self.pstat.SetVoltage, dc, what="SetVoltage")
            await self._cell(True)
            for f in freqs:
                out.append(await self._point(readz, sink, f, request.amplitude_V))
        finally:
            with contextlib.suppress(InstrumentError):
                await asyncio.shield(self._cell(False))
            del conn
        a = np.asarray(out, dtype=np.float64)
        return EisResult(
            frequency_Hz=a[:, 0], z_real_ohm=a[:, 1], z_imag_ohm=a[:, 2],
            dc_voltage_V=float(np.mean(a[:, 3])), duration_s=loop.time() - t0,
        )  # fmt: skip

    async def _point(
        self, readz: Any, sink: _ReadZSink, f: float, ac: float
    ) -> tuple[float, float, float, float]:
        loop = asyncio.get_running_loop()
        for _attempt in range(self.readz_retries + 1):
            sink.status = None
            await self.com(readz.Measure, f, ac, what="ReadZ.Measure")
            end = loop.time() + 20.0 / f + 30.0
            while sink.status is None:
                await asyncio.sleep(min(self.poll_s, 0.5 / f + 0.05))
                await self.com(self.backend.pump, 0.0, what="PumpEvents")
                if sink.status is None and loop.time() > end:
                    raise InstrumentTimeout(f"{self.name}: no impedance at {f:g} Hz in time")
            if sink.status == 0:
                zf = await self.com(readz.Zfreq, what="Zfreq")
                zr = await self.com(readz.Zreal, what="Zreal")
                zi = await self.com(readz.Zimag, what="Zimag")
                vdc = await self.com(readz.Vdc, what="Vdc")
                return float(zf), float(zr), float(zi), float(vdc)
            if sink.status != 1:  # 1: retry, the instrument adjusts its ranges
                break
        raise GamryError(f"{self.name}: ReadZ failed at {f:g} Hz (status {sink.status})")

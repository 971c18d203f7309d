"""The simulated GamryCOM objects: device list, potentiostat, signal, acquisitions, ReadZ.

Acquisitions run on the device's channel engine: an OCV acquisition is a rest, a
galvanostatic chronopotentiometry a constant-current step (the cell must be on), each
recording one point per sample period; ``Cook(n)`` hands out the points not yet cooked
as columns. ReadZ measures the engine's cell impedance at one frequency, done after a
few periods of it.
"""

from __future__ import annotations

import cmath
import math
from typing import Any

import numpy as np

from labrig.simulators.engine import EngineError, SimEnd, SimRecord, SimStep

from ._base import ComServer, Constants, SimComError, SimDevice

__all__ = ["DeviceList", "DtaqChrono", "DtaqOcv", "Pstat", "ReadZ", "SignalConst"]

E_FAIL = -2147467259
E_NOT_OPEN = -2147418113
#: seconds a ReadZ point takes besides its periods
POINT_OVERHEAD_S = 0.2


class _Object:
    def __init__(self, com: ComServer) -> None:
        self._com = com

    def _enter(self) -> None:
        self._com.check_thread()

    def deliver(self, sink: Any, now: float) -> None:
        """Call ``sink``'s event methods for what is due by ``now`` (none by default)."""


class DeviceList(_Object):
    def Count(self) -> int:
        self._enter()
        return len(self._com.devices)

    def EnumSections(self) -> tuple[str, ...]:
        self._enter()
        return tuple(self._com.devices)

    def EnumLabels(self) -> tuple[str, ...]:
        self._enter()
        return tuple(d.label for d in self._com.devices.values())


class Pstat(_Object):
    def __init__(self, com: ComServer, cls: str) -> None:
        super().__init__(com)
        self.cls = cls
        self.device: SimDevice | None = None
        self.open = False
        self.cell = Constants.CellOff
        self.mode = Constants.PstatMode
        self.voltage = 0.0
        self.signal: SignalConst | None = None

    def _dev(self) -> SimDevice:
        self._enter()
        if self.device is None or not self.open:
            raise SimComError(E_NOT_OPEN, "Pstat not open")
        if self.device.lost:
            raise SimComError(E_FAIL, f"{self.device.section}: instrument not responding")
        return self.device

    def Init(self, section: str) -> None:
        self._enter()
        dev = self._com.devices.get(section)
        if dev is None:
            raise SimComError(E_FAIL, f"no instrument {section!r}")
        if dev.pstat_class != self.cls:
            raise SimComError(E_FAIL, f"{section} is not a {self.cls}")
        self.device = dev

    def Open(self) -> None:
        self._enter()
        dev = self.device
        if dev is None:
            raise SimComError(E_FAIL, "Init before Open")
        if dev.opened_by not in (None, self):
            raise SimComError(E_FAIL, f"{dev.section} is in use by another program")
        dev.opened_by = self
        self.open = True

    def Close(self) -> None:
        self._enter()
        if self.device is not None and self.device.opened_by is self:
            self.device.opened_by = None
        self.open = False

    def SetCell(self, state: int) -> None:
        dev = self._dev()
        if state not in (Constants.CellOn, Constants.CellOff):
            raise SimComError(E_FAIL, f"bad cell state {state!r}")
        self.cell = state
        dev.events.append(f"cell {'on' if state == Constants.CellOn else 'off'}")
        if state == Constants.CellOff:
            now = self._com.now()
            if dev.engine.status(now, live=False).state in ("running", "paused"):
                dev.engine.stop(now)  # no current without the cell

    def Cell(self) -> int:
        self._dev()
        return self.cell

    def SetCtrlMode(self, mode: int) -> None:
        self._dev()
        if mode not in (Constants.PstatMode, Constants.GstatMode):
            raise SimComError(E_FAIL, f"bad control mode {mode!r}")
        self.mode = mode

    def SetVoltage(self, volts: float) -> None:
        self._dev()
        self.voltage = float(volts)

    def SetSignal(self, signal: SignalConst) -> None:
        self._dev()
        self.signal = signal

    def InitSignal(self) -> None:
        self._dev()
        if self.signal is None:
            raise SimComError(E_FAIL, "no signal set")


class SignalConst(_Object):
    level = 0.0
    duration_s = 0.0
    sample_s = 1.0
    mode = Constants.PstatMode

    def Init(self, pstat: Pstat, level: float, duration: float, sample: float, mode: int) -> None:
        self._enter()
        if not (duration > 0 and sample > 0 and math.isfinite(level)):
            raise SimComError(E_FAIL, "signal: duration and sample period must be > 0")
        self.level, self.duration_s, self.sample_s, self.mode = level, duration, sample, mode


class _Dtaq(_Object):
    kind = ""

    def __init__(self, com: ComServer) -> None:
        super().__init__(com)
        self.pstat: Pstat | None = None
        self.seq0 = 0  # engine records before the run
        self.cooked = 0  # points handed out by Cook
        self.signalled = 0  # points announced by OnDataAvailable
        self.tt0 = 0.0  # engine test time at Run
        self.running = False
        self.done_sent = False
        self.points: list[tuple[float, float, float, float]] = []  # t, V, I, Q

    def Init(self, pstat: Pstat, *args: Any) -> None:
        self._enter()
        self.pstat = pstat

    def Run(self, start: bool) -> None:
        p = self.pstat
        if p is None:
            raise SimComError(E_FAIL, "Init before Run")
        dev = p._dev()
        now = self._com.now()
        if not start:
            if dev.engine.status(now, live=False).state == "running":
                dev.engine.stop(now)
            return
        sig = p.signal
        if sig is None:
            raise SimComError(E_FAIL, "no signal set")
        cc = (
            self.kind == "chrono" and p.cell == Constants.CellOn and sig.mode == Constants.GstatMode
        )
        end = (SimEnd("time", ">=", sig.duration_s),)
        rec = SimRecord(every_s=sig.sample_s)
        step = (SimStep(1, "cc", current_A=sig.level, ends=end, record=rec) if cc
                else SimStep(1, "rest", ends=end, record=rec))  # fmt: skip
        eng = dev.engine
        st = eng.status(now, live=False)
        self.seq0, self.tt0 = st.last_seq, st.test_time_s
        try:
            eng.start_block(_next_block(dev), [step], now)
        except EngineError as exc:
            raise SimComError(E_FAIL, f"cannot run: {exc}") from None
        self.running = True

    def _collect(self, now: float) -> None:
        p = self.pstat
        if p is None or p.device is None:
            return
        recs = p.device.engine.records_after(self.seq0 + len(self.points), now)
        for n in range(recs["seq"].size):
            self.points.append((
                float(recs["time_s"][n]) - self.tt0, float(recs["voltage_V"][n]),
                float(recs["current_A"][n]), float(recs["step_charge_Ah"][n]) * 3600.0,
            ))  # fmt: skip

    def deliver(self, sink: Any, now: float) -> None:
        if not self.running or self.pstat is None or self.pstat.device is None:
            return
        self._collect(now)
        if len(self.points) > self.signalled:
            self.signalled = len(self.points)
            sink._IGamryDtaqEvents_OnDataAvailable(self)
        eng = self.pstat.device.engine
        if eng.status(now, live=False).state != "running" and not self.done_sent:
            self.done_sent = True
            self.running = False
            sink._IGamryDtaqEvents_OnDataDone(self)

    def Cook(self, n: int) -> tuple[int, tuple[tuple[float, ...], ...]]:
        self._enter()
        rows = self.points[self.cooked : self.cooked + int(n)]
        self.cooked += len(rows)
        if not rows:
            return 0, ()
        level = self.pstat.signal.level if self.pstat and self.pstat.signal else 0.0
        return len(rows), self._columns(rows, level)

    def _columns(self, rows: list[tuple[float, float, float, float]], level: float) -> Any:
        raise NotImplementedError


def _next_block(dev: SimDevice) -> int:
    dev.events.append("run")
    return len(dev.events)


class DtaqOcv(_Dtaq):
    """Columns: Time, Vf, Vm, Vsig, Ach, Overload, StopTest."""

    kind = "ocv"

    def _columns(self, rows: list[tuple[float, float, float, float]], level: float) -> Any:
        t, v = [r[0] for r in rows], [r[1] for r in rows]
        z = [0.0] * len(rows)
        return (tuple(t), tuple(v), tuple(v), tuple([level] * len(rows)), tuple(z), tuple(z),
                tuple(z))  # fmt: skip


class DtaqChrono(_Dtaq):
    """Columns: Time, Vf, Vu, Im, Q, Vsig, Ach, IERange, Overload, StopTest."""

    kind = "chrono"

    def _columns(self, rows: list[tuple[float, float, float, float]], level: float) -> Any:
        t, v, i, q = (tuple(r[k] for r in rows) for k in range(4))
        z = tuple([0.0] * len(rows))
        return (t, v, v, i, q, tuple([level] * len(rows)), z, z, z, z)


class ReadZ(_Object):
    def __init__(self, com: ComServer) -> None:
        super().__init__(com)
        self.pstat: Pstat | None = None
        self.due: float | None = None
        self.freq = 0.0
        self.z = complex(0.0, 0.0)
        self.vdc = 0.0
        self.status = Constants.ReadZStatusOk

    def Init(self, pstat: Pstat) -> None:
        self._enter()
        self.pstat = pstat

    def Measure(self, frequency: float, ac: float) -> None:
        p = self.pstat
        if p is None:
            raise SimComError(E_FAIL, "Init before Measure")
        dev = p._dev()
        if not (frequency > 0 and ac > 0):
            raise SimComError(E_FAIL, "frequency and amplitude must be > 0")
        now = self._com.now()
        self.freq = float(frequency)
        self.due = now + 3.0 / self.freq + POINT_OVERHEAD_S
        if p.cell != Constants.CellOn or p.mode != Constants.PstatMode:
            self.status = Constants.ReadZStatusError
            return
        if dev.retries > 0:
            dev.retries -= 1
            self.status = Constants.ReadZStatusRetry
            return
        self.status = Constants.ReadZStatusOk
        self.z = complex(dev.engine.measure_impedance(np.asarray([self.freq]), now)[0])
        self.vdc = dev.engine.ocv(now) if abs(p.voltage - dev.engine.ocv(now)) < 0.05 else p.voltage

    def deliver(self, sink: Any, now: float) -> None:
        if self.due is not None and now >= self.due:
            self.due = None
            sink._IGamryReadZEvents_OnDataDone(self, self.status)

    def _value(self, x: float) -> float:
        self._enter()
        if self.status != Constants.ReadZStatusOk:
            raise SimComError(E_FAIL, "no valid point")
        return x

    def Zfreq(self) -> float:
        return self._value(self.freq)

    def Zreal(self) -> float:
        return self._value(self.z.real)

    def Zimag(self) -> float:
        return self._value(self.z.imag)

    def Zmod(self) -> float:
        return self._value(abs(self.z))

    def Zphz(self) -> float:
        return self._value(math.degrees(cmath.phase(self.z)))

    def Vdc(self) -> float:
        return self._value(self.vdc)

    def Idc(self) -> float:
        return self._value(0.0)

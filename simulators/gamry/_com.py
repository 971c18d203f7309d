"""A simulated GamryCOM: the objects, methods, events and constants a client uses.

Stands where comtypes and the Gamry Framework's COM server stand: ``create(progid)``
makes ``GamryCOM.GamryDeviceList``, ``GamryPC6Pstat`` / ``GamryPC5Pstat``,
``GamrySignalConst``, ``GamryDtaqOcv``, ``GamryDtaqChrono`` and ``GamryReadZ`` objects
with the methods of the same names; ``events(source, sink)`` connects a sink whose
``_IGamryDtaqEvents_OnDataAvailable`` / ``..._OnDataDone`` (``_IGamryReadZEvents_...``
with a status) are called while ``pump`` delivers what is due on the simulated clock.
Objects belong to the thread that started COM (``thread_init``): a call from another
thread fails as COM's apartment rule makes it fail. Written from Gamry's published
interface descriptions and public examples, independently of labrig's driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from labrig.simulators.engine import ChannelEngine

from ._base import Constants, SimComError, SimDevice
from ._objects import DeviceList, DtaqChrono, DtaqOcv, Pstat, ReadZ, SignalConst

__all__ = ["Constants", "SimComError", "SimDevice", "SimGamryCom"]


class SimGamryCom:
    """The backend a Gamry driver is given in tests (see the module's notes)."""

    constants = Constants
    errors: tuple[type[BaseException], ...] = (SimComError,)

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.devices: dict[str, SimDevice] = {}
        self.created: list[str] = []
        self._sources: list[tuple[Any, Any]] = []
        self._owner: int | None = None
        self.lock = threading.RLock()

    def add_device(
        self, section: str, engine: ChannelEngine, *, label: str = "Interface 1000",
        pstat_class: str = "GamryPC6Pstat",
    ) -> SimDevice:  # fmt: skip
        dev = SimDevice(section, label, engine, pstat_class)
        self.devices[section] = dev
        return dev

    # ------------------------------------------------------------------ faults
    def lose(self, section: str, lost: bool = True) -> None:
        self.devices[section].lost = lost

    def retry_points(self, section: str, n: int) -> None:
        self.devices[section].retries = n

    # ------------------------------------------------------------------ COM
    def thread_init(self) -> None:
        self._owner = threading.get_ident()

    def thread_exit(self) -> None:
        self._owner = None

    def check_thread(self) -> None:
        if self._owner is not None and threading.get_ident() != self._owner:
            raise SimComError(-2147417842, "The application called an interface that was "
                                           "marshalled for a different thread.")  # fmt: skip

    def create(self, progid: str) -> Any:
        self.check_thread()
        self.created.append(progid)
        factories: dict[str, Callable[[], Any]] = {
            "GamryCOM.GamryDeviceList": lambda: DeviceList(self),
            "GamryCOM.GamryPC6Pstat": lambda: Pstat(self, "GamryPC6Pstat"),
            "GamryCOM.GamryPC5Pstat": lambda: Pstat(self, "GamryPC5Pstat"),
            "GamryCOM.GamrySignalConst": lambda: SignalConst(self),
            "GamryCOM.GamryDtaqOcv": lambda: DtaqOcv(self),
            "GamryCOM.GamryDtaqChrono": lambda: DtaqChrono(self),
            "GamryCOM.GamryReadZ": lambda: ReadZ(self),
        }
        make = factories.get(progid)
        if make is None:
            raise SimComError(-2147221005, f"Invalid class string {progid!r}")
        return make()

    def events(self, source: Any, sink: Any) -> Any:
        self.check_thread()
        pair = (source, sink)
        self._sources.append(pair)
        return _Connection(self, pair)

    def pump(self, timeout_s: float) -> None:
        """Deliver every event due by now (never waits: time is the simulation's)."""
        self.check_thread()
        now = self.now()
        for source, sink in list(self._sources):
            source.deliver(sink, now)

    def disconnect(self, pair: tuple[Any, Any]) -> None:
        if pair in self._sources:
            self._sources.remove(pair)


class _Connection:
    def __init__(self, com: SimGamryCom, pair: tuple[Any, Any]) -> None:
        self._com = com
        self._pair = pair

    def __del__(self) -> None:
        self._com.disconnect(self._pair)

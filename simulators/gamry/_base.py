"""What every simulated GamryCOM object shares: its error, the type library's constants,
a device, and what an object asks of the COM server it belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from labrig.simulators.engine import ChannelEngine

__all__ = ["ComServer", "Constants", "SimComError", "SimDevice"]


@dataclass
class SimDevice:
    section: str
    label: str
    engine: ChannelEngine
    pstat_class: str = "GamryPC6Pstat"
    opened_by: object | None = None
    lost: bool = False  # the USB link is gone
    retries: int = 0  # ReadZ points that first answer "retry"
    events: list[str] = field(default_factory=list)


class ComServer(Protocol):
    """What a COM object uses of its server (:class:`~._com.SimGamryCom`)."""

    now: Callable[[], float]
    devices: dict[str, SimDevice]

    def check_thread(self) -> None: ...


class SimComError(Exception):
    """What a failing COM call raises: ``(hresult, text)`` like comtypes' COMError."""

    def __init__(self, hresult: int, text: str) -> None:
        super().__init__(hresult, text)
        self.hresult = hresult
        self.text = text


class Constants:
    """The type library's enumerations labrig reads (values as the simulator defines
    them: a client must use the names, never the numbers)."""

    CellOff = 0
    CellOn = 1
    PstatMode = 1
    GstatMode = 2
    ChronoAmp = 0
    ChronoPot = 1
    ReadZStatusOk = 0
    ReadZStatusRetry = 1
    ReadZStatusError = 2

"""What every simulated GamryCOM object shares: its error and the type library's constants."""

from __future__ import annotations

__all__ = ["Constants", "SimComError"]


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

"""Gamry Interface 1000 / Reference 600 potentiostats through GamryCOM (Windows COM).

``async with open_gamry(name="eis") as ch:`` gives a :class:`GamryChannel`: an
:class:`~drivers.capabilities.ImpedanceChannel` (EIS point by point with GamryReadZ, OCV)
and a host-run :class:`~drivers.capabilities.CyclerChannel` (rest and constant-current
steps). comtypes is imported only when a real instrument is opened; tests pass the
simulator's backend.
"""

from ._channel import CHRONO_COLUMNS, OCV_COLUMNS, GamryChannel
from ._com import GAMRYCOM_TYPELIB, ComBackend, ComCaller, GamryError, comtypes_backend
from ._open import OPTIONS, open_gamry

__all__ = [
    "CHRONO_COLUMNS",
    "GAMRYCOM_TYPELIB",
    "OCV_COLUMNS",
    "OPTIONS",
    "ComBackend",
    "ComCaller",
    "GamryChannel",
    "GamryError",
    "comtypes_backend",
    "open_gamry",
]

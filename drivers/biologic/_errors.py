"""Typed errors of the BioLogic driver: every EClib failure becomes one of these."""

from __future__ import annotations

from labrig.drivers.capabilities import InstrumentError, InstrumentTimeout

from ._structs import ERROR_TEXT

__all__ = [
    "BioLogicError",
    "ChannelInUse",
    "FirmwareMismatch",
    "LibraryNotFound",
    "LinkLost",
    "TechniqueRejected",
    "error_for",
]


class BioLogicError(InstrumentError):
    """An EClib call returned an error code. ``code`` and ``call`` say which."""

    def __init__(self, message: str, *, code: int = 0, call: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.call = call


class LinkLost(BioLogicError, InstrumentTimeout):
    """USB or Ethernet link to the instrument lost (or a call outlived its deadline)."""


class ChannelInUse(BioLogicError):
    """The channel runs something else (EC-Lab, another program) or is busy."""


class FirmwareMismatch(BioLogicError):
    """Firmware or technique file does not match the channel (EC-Lab's firmware loaded,
    a technique file of the other family, firmware older than the library...)."""


class TechniqueRejected(BioLogicError):
    """The channel refused a technique or its parameters."""


class LibraryNotFound(BioLogicError):
    """The Development Package (DLL, technique or firmware files) is not where the
    station says it is installed."""


_LINK = frozenset({-1, -2, -10, -11, -101, -104, -105, -200, -201, -202, -203, -206, -207})
_IN_USE = frozenset({-9, -12, -13, -14})
_FIRMWARE = frozenset({-103, -205, -300, -301, -302, -303, -304, -305, -306, -307, -308, -309})
_TECHNIQUE = frozenset({-4, -15, -400, -401, -402, -403, -404, -405})

_HINT = {
    -9: "EC-Lab's firmware is loaded: close EC-Lab on this channel, or allow the driver to "
    "load the Development Package firmware (option load_firmware)",
    -13: "the channel is already running: stop it in EC-Lab or end the other program",
    -308: "no firmware on the channel: the driver loads it when load_firmware is on",
    -309: "the firmware does not match this library version: reload it (force_firmware)",
    -401: "the technique file is of the other family (x.ecc for VMP3, x4.ecc for SP-300): "
    "check the model named in the station file",
    -400: "the technique file is missing from the library folder named in the station",
}


def error_for(code: int, call: str, *, name: str = "biologic", detail: str = "") -> BioLogicError:
    """The typed error for an EClib code returned by ``call``."""
    text = ERROR_TEXT.get(code, "unknown error")
    msg = f"{name}: {call} failed with {code} ({detail or text})"
    hint = _HINT.get(code)
    if hint:
        msg += f"; {hint}"
    if code in _LINK:
        return LinkLost(msg, code=code, call=call)
    if code in _IN_USE:
        return ChannelInUse(msg, code=code, call=call)
    if code in _FIRMWARE or code == -401:
        return FirmwareMismatch(msg, code=code, call=call)
    if code in _TECHNIQUE:
        return TechniqueRejected(msg, code=code, call=call)
    if code == -5:
        return LibraryNotFound(msg, code=code, call=call)
    return BioLogicError(msg, code=code, call=call)

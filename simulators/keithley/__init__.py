"""Simulated Keithley 2450 SMU speaking SCPI on loopback TCP (see :mod:`.smu`)."""

from .serve import ScpiServer, serve_k2450
from .smu import Smu2450

__all__ = ["ScpiServer", "Smu2450", "serve_k2450"]

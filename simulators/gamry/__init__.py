"""A simulated Gamry Interface 1000 standing where GamryCOM (through comtypes) stands."""

from ._base import Constants, SimComError
from ._com import SimDevice, SimGamryCom
from .serve import simulate_gamry

__all__ = ["Constants", "SimComError", "SimDevice", "SimGamryCom", "simulate_gamry"]

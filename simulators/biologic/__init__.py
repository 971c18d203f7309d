"""Simulated BioLogic potentiostats standing where the EC-Lab Development Package stands.

:class:`SimEClib` has the DLL's functions, structures, data buffers and error codes,
written from the package's documentation independently of labrig's driver, backed by
the channel engine's simulated cells (:mod:`simulators.engine`).
"""

from ._library import MODELS, AbiError, SimEClib, SimInstrument
from .serve import BioLogicSim, simulate_biologic

__all__ = ["MODELS", "AbiError", "BioLogicSim", "SimEClib", "SimInstrument", "simulate_biologic"]

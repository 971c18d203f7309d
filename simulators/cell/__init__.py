"""The simulated battery cell: parameters, OCV, equivalent-circuit model, impedance,
presets, and the step runner a simulated cycler channel uses."""

from .impedance import CircuitElements, circuit_elements, impedance
from .model import CellModel, CellState
from .ocv import OcvCurve
from .params import CellParams
from .presets import DEFAULT_PRESET, PRESETS, preset
from .runner import Progress, StepRun, run_step
from .steps import Limits, SimEnd, SimRecord, SimStep

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "CellModel",
    "CellParams",
    "CellState",
    "CircuitElements",
    "Limits",
    "OcvCurve",
    "Progress",
    "SimEnd",
    "SimRecord",
    "SimStep",
    "StepRun",
    "circuit_elements",
    "impedance",
    "preset",
    "run_step",
]

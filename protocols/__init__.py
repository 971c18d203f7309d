"""The protocol language: validated models, step strings, YAML loading, library, summaries.

Typical use::

    from labrig.protocols import load_protocol, summarize, render_summary
    p = load_protocol("endurance_1c_checkups")        # a library name, a path or YAML text
    print(render_summary(summarize(p)))

This package is pure data: it imports nothing else of labrig.
"""

from __future__ import annotations

from .errors import Issue, ProtocolError
from .library import LibraryEntry, library_names, library_path, list_library
from .loader import dump_protocol_yaml, load_protocol, load_protocol_text, protocol_issues
from .models import (
    CellSpec,
    ChamberStep,
    Checkpoint,
    Condition,
    Current,
    CurrentStep,
    CVTail,
    Defaults,
    EisStep,
    FurnaceStep,
    GasStep,
    Group,
    HoldStep,
    Loop,
    LoopCondition,
    Protocol,
    PulseStep,
    RecordRule,
    RestStep,
    SafetyLimits,
    StabilityRule,
    Step,
)
from .stepstrings import StepSyntaxError, parse_conditions, parse_loop_condition, parse_step
from .summary import Summary, format_duration, render_summary, summarize
from .units import Dimension, UnitError, parse_current, parse_quantity

__all__ = [
    "CVTail",
    "CellSpec",
    "ChamberStep",
    "Checkpoint",
    "Condition",
    "Current",
    "CurrentStep",
    "Defaults",
    "Dimension",
    "EisStep",
    "FurnaceStep",
    "GasStep",
    "Group",
    "HoldStep",
    "Issue",
    "LibraryEntry",
    "Loop",
    "LoopCondition",
    "Protocol",
    "ProtocolError",
    "PulseStep",
    "RecordRule",
    "RestStep",
    "SafetyLimits",
    "StabilityRule",
    "Step",
    "StepSyntaxError",
    "Summary",
    "UnitError",
    "dump_protocol_yaml",
    "format_duration",
    "library_names",
    "library_path",
    "list_library",
    "load_protocol",
    "load_protocol_text",
    "parse_conditions",
    "parse_current",
    "parse_loop_condition",
    "parse_quantity",
    "parse_step",
    "protocol_issues",
    "render_summary",
    "summarize",
]

"""Furnace runs: anneals, calcinations and regenerations on a furnace position.

``execute_thermal_run(req)`` (called by :func:`orchestrator.runner.execute_run` for a
protocol of furnace and gas steps) opens the position's Eurotherm controller and Alicat
mass-flow controllers (simulated in-process with ``req.sim``), compiles the furnace steps
into controller programmes, sets the atmosphere, supervises, records ``thermal.parquet``
and ``summary.json``, and leaves the furnace in its safe state; ``resume_thermal_run``
re-attaches to the programme after the orchestrator was killed. See docs/thermal.md.
"""

from .executor import FurnaceExecutor, StepView, ThermalOutcome
from .instruments import ThermalInstruments, open_thermal_instruments
from .options import ThermalOptions
from .plan import GasPhase, PlanError, ProgrammePhase, ThermalPlan, compile_thermal
from .recorder import SERIES_FILE, STAGING_FILE, SUMMARY_FILE, read_series
from .run import execute_thermal_run, resume_thermal_run, thermal_options
from .samples import find_anneal_for_sample, group_by_anneal, samples_of
from .summary import gas_used_scc, summarise, summary_lines

__all__ = [
    "SERIES_FILE",
    "STAGING_FILE",
    "SUMMARY_FILE",
    "FurnaceExecutor",
    "GasPhase",
    "PlanError",
    "ProgrammePhase",
    "StepView",
    "ThermalInstruments",
    "ThermalOptions",
    "ThermalOutcome",
    "ThermalPlan",
    "compile_thermal",
    "execute_thermal_run",
    "find_anneal_for_sample",
    "gas_used_scc",
    "group_by_anneal",
    "open_thermal_instruments",
    "read_series",
    "resume_thermal_run",
    "samples_of",
    "summarise",
    "summary_lines",
    "thermal_options",
]

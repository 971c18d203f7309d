"""The cell-run executor (its layers live in :mod:`orchestrator.run`)."""

from .run.bindings import RunBindings
from .run.cellrun import count_steps
from .run.executor import Executor
from .run.lifecycle import RunAborted, RunOptions, RunOutcome

__all__ = ["Executor", "RunAborted", "RunBindings", "RunOptions", "RunOutcome", "count_steps"]

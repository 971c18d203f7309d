"""Step definitions for a simulated cycler channel (the firmware's view of a step).

These mirror, independently, what a cycler is programmed with: a mode (rest, constant
current, constant voltage, CC then CV), signed current (+ charges the cell), a voltage
set point, end conditions with actions, and a record rule. Everything SI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "END_ACTIONS",
    "END_QUANTITIES",
    "Action",
    "EngineBusy",
    "EngineError",
    "EngineFault",
    "Limits",
    "Mode",
    "Op",
    "Quantity",
    "SimEnd",
    "SimRecord",
    "SimStep",
    "validate_block",
]

Quantity = Literal["voltage", "current", "time", "capacity", "dvdt", "temperature"]
Op = Literal[">=", "<=", "cross"]
Action = Literal["next", "end_block", "abort", "pause", "notify", "goto"]
Mode = Literal["rest", "cc", "cv", "cccv"]

END_QUANTITIES: tuple[str, ...] = ("voltage", "current", "time", "capacity", "dvdt", "temperature")
END_ACTIONS: tuple[str, ...] = ("next", "end_block", "abort", "pause", "notify", "goto")


def _finite(name: str, v: float | None) -> None:
    if v is not None and (isinstance(v, bool) or not math.isfinite(float(v))):
        raise ValueError(f"{name} must be a finite number, got {v!r}")


@dataclass(frozen=True, slots=True)
class SimEnd:
    """End a step when ``quantity op value``.

    ``voltage`` V; ``current`` |A|; ``time`` s of step time; ``capacity`` |Ah| passed in
    the step; ``dvdt`` |V/s|; ``temperature`` °C. ``cross`` means crossing ``value``
    from the side the step starts on. ``goto`` is a 0-based index into the block's steps.
    """

    quantity: Quantity
    op: Op
    value: float
    action: Action = "next"
    goto: int | None = None

    def __post_init__(self) -> None:
        if self.quantity not in END_QUANTITIES:
            raise ValueError(
                f"end quantity must be one of {', '.join(END_QUANTITIES)}; got {self.quantity!r}"
            )
        if self.op not in (">=", "<=", "cross"):
            raise ValueError(f"end op must be '>=', '<=' or 'cross'; got {self.op!r}")
        if self.action not in END_ACTIONS:
            raise ValueError(
                f"end action must be one of {', '.join(END_ACTIONS)}; got {self.action!r}"
            )
        _finite("end value", self.value)
        if self.action == "goto" and self.goto is None:
            raise ValueError("an end with action 'goto' needs a goto index")


@dataclass(frozen=True, slots=True)
class SimRecord:
    """Record every ``every_s`` seconds from step start, whenever V moved by ``dV_V`` or I
    by ``dI_A`` since the last record, and always at the step's exact end."""

    every_s: float | None = 10.0
    dV_V: float | None = None
    dI_A: float | None = None

    def __post_init__(self) -> None:
        for n in ("every_s", "dV_V", "dI_A"):
            v = getattr(self, n)
            _finite(f"record {n}", v)
            if v is not None and v <= 0:
                raise ValueError(f"record {n} must be > 0 (or None), got {v!r}")


@dataclass(frozen=True, slots=True)
class SimStep:
    """One step. ``current_A`` is signed (+ charges).

    ``cc`` runs ``current_A``; ``cv`` holds ``voltage_V`` with |current| limited to
    ``|current_A|`` (or the channel's i_max when 0); ``cccv`` runs ``current_A`` until
    ``voltage_V`` and then holds it. ``ends`` apply to the whole step, ``cv_ends`` only
    while holding voltage. ``max_duration_s`` is a hard stop (reason ``max_duration``).
    ``temperature_C`` sets the cell temperature for the step (None: the channel's).

    Conditions on quantities that cannot change during a phase are checked once at its
    start: ``current`` in CC and rest, ``temperature`` always, ``dvdt`` never during a
    voltage hold (the voltage is constant there). In ``cccv`` a ``voltage`` end in
    ``ends`` is evaluated literally and so ends the step when the hold would begin; put
    the hold's termination in ``cv_ends``.
    """

    step_id: int
    mode: Mode
    kind: str = ""
    current_A: float = 0.0
    voltage_V: float | None = None
    ends: tuple[SimEnd, ...] = ()
    cv_ends: tuple[SimEnd, ...] = ()
    record: SimRecord = field(default_factory=SimRecord)
    max_duration_s: float | None = None
    temperature_C: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("rest", "cc", "cv", "cccv"):
            raise ValueError(
                f"step {self.step_id}: mode must be rest, cc, cv or cccv; got {self.mode!r}"
            )
        _finite(f"step {self.step_id}: current_A", self.current_A)
        _finite(f"step {self.step_id}: voltage_V", self.voltage_V)
        _finite(f"step {self.step_id}: max_duration_s", self.max_duration_s)
        _finite(f"step {self.step_id}: temperature_C", self.temperature_C)
        if self.mode in ("cv", "cccv") and self.voltage_V is None:
            raise ValueError(f"step {self.step_id}: mode {self.mode} needs voltage_V")
        if self.mode == "cccv" and self.current_A == 0:
            raise ValueError(f"step {self.step_id}: mode cccv needs a non-zero current_A")
        if self.max_duration_s is not None and self.max_duration_s < 0:
            raise ValueError(f"step {self.step_id}: max_duration_s must be >= 0")
        if self.cv_ends and self.mode not in ("cv", "cccv"):
            raise ValueError(f"step {self.step_id}: cv_ends only apply to cv and cccv steps")
        for e in (*self.ends, *self.cv_ends):
            if not isinstance(e, SimEnd):
                raise ValueError(f"step {self.step_id}: ends must be SimEnd, got {e!r}")


@dataclass(frozen=True, slots=True)
class Limits:
    """The channel's safety envelope (firmware-enforced)."""

    v_min: float = 0.0
    v_max: float = 5.0
    i_max: float = 0.1
    t_max: float | None = None

    def __post_init__(self) -> None:
        for n in ("v_min", "v_max", "i_max", "t_max"):
            _finite(f"limit {n}", getattr(self, n))
        if not self.v_min < self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        if self.i_max <= 0:
            raise ValueError(f"i_max must be > 0, got {self.i_max}")


class EngineError(ValueError):
    """A request the channel rejects (bad block, bad argument)."""


class EngineBusy(EngineError):
    """The request needs the channel idle, and it is running (or paused)."""


class EngineFault(EngineError):
    """The channel is in fault (latched); ``reset()`` first."""


def validate_block(steps: Sequence[SimStep], limits: Limits) -> tuple[SimStep, ...]:
    """The block as a tuple, or :class:`EngineError` naming the step the firmware cannot
    run and why (a goto outside the block, a set point outside the limits, a rest with
    no end that can come)."""
    steps_t = tuple(steps)
    if not steps_t:
        raise EngineError("a block needs at least one step")
    lim = limits
    for n, s in enumerate(steps_t):
        if not isinstance(s, SimStep):
            raise EngineError(f"step {n}: expected SimStep, got {type(s).__name__}")
        for e in (*s.ends, *s.cv_ends):
            if e.action == "goto" and (e.goto is None or not 0 <= e.goto < len(steps_t)):
                raise EngineError(
                    f"step {s.step_id}: goto index {e.goto} outside the block "
                    f"(0..{len(steps_t) - 1})"
                )
        if (
            s.voltage_V is not None
            and s.mode in ("cv", "cccv")
            and not (lim.v_min <= s.voltage_V <= lim.v_max)
        ):
            raise EngineError(
                f"step {s.step_id}: set point {s.voltage_V} V outside the limits "
                f"[{lim.v_min}, {lim.v_max}] V"
            )
        if s.mode in ("rest",) or (s.mode == "cc" and s.current_A == 0):
            ok = s.max_duration_s is not None or any(
                e.quantity in ("time", "dvdt", "voltage") for e in s.ends
            )
            if not ok:
                raise EngineError(
                    f"step {s.step_id}: a rest needs an end that can come "
                    "(time, dvdt, voltage) or max_duration_s"
                )
    return steps_t

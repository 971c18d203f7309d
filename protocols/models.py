"""The protocol language as validated data (pydantic 2).

YAML and Python build the same tree. Every model forbids unknown fields, accepts numbers
in the unit its field name carries (``voltage_V``) or strings with any compatible unit
("3.7 V", "3700 mV"), and rejects non-finite numbers. Step strings in a sequence
("Charge at 0.1C until 3.68 V") are parsed by :mod:`protocols.stepstrings` into the
step models below, so a string and its long form are the same thing.

Signs: charge and discharge are words here. The cycler capability's convention
(positive current charges the cell) is applied when steps are compiled for an instrument.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .fields import (
    Action,
    CellSpec,
    Celsius,
    Condition,
    Current,
    Finite,
    RecordRule,
    Voltage,
    _accepts,
    _Model,
    _q,
    _scale,
)
from .steps import (
    ChamberStep,
    CurrentStep,
    CVTail,
    EisStep,
    ElectricalStep,
    FurnaceStep,
    GasStep,
    HoldStep,
    PulseStep,
    RestStep,
    StabilityRule,
    Step,
)
from .units import Dimension

__all__ = [
    "Action",
    "CVTail",
    "CellSpec",
    "ChamberStep",
    "Checkpoint",
    "Condition",
    "Current",
    "CurrentStep",
    "Defaults",
    "EisStep",
    "ElectricalStep",
    "FurnaceStep",
    "GasStep",
    "Group",
    "HoldStep",
    "Loop",
    "LoopCondition",
    "Node",
    "Protocol",
    "PulseStep",
    "RecordRule",
    "RestStep",
    "SafetyLimits",
    "StabilityRule",
    "Step",
]

# --------------------------------------------------------------------------- structure


class LoopCondition(_Model):
    """Ends a loop between iterations, e.g. discharge capacity < 80 % of cycle 3.

    ``quantity`` is a per-cycle figure; the threshold is ``value`` (SI: Ah, or a fraction
    for efficiency) or ``fraction`` x the same figure at ``reference_cycle``.
    """

    quantity: Literal[
        "discharge_capacity", "charge_capacity", "coulombic_efficiency", "mean_discharge_voltage"
    ]
    op: Literal["<", "<=", ">", ">="]
    value: Finite | None = None
    fraction: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    reference_cycle: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    @_accepts("loop_condition")
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            from .stepstrings import parse_loop_condition

            return parse_loop_condition(data)
        return data

    @model_validator(mode="after")
    def _valid(self) -> LoopCondition:
        if (self.value is None) == (self.fraction is None):
            raise ValueError("give either value or fraction (with reference_cycle)")
        if self.fraction is not None and self.reference_cycle is None:
            raise ValueError("a fraction needs reference_cycle")
        return self


def _node_tag(v: Any) -> str:
    if isinstance(v, str):
        return "text"
    if isinstance(v, dict):
        if "step" in v:
            return "step"
        if "repeat" in v or "until" in v or "checkpoints" in v:
            return "loop"
        if "steps" in v:
            return "group"
        return "step"
    if isinstance(v, Loop):
        return "loop"
    if isinstance(v, Group):
        return "group"
    return "step"


@_accepts("step_string")
def _text_to_step(v: Any) -> Any:
    if isinstance(v, str):
        from .stepstrings import parse_step

        return parse_step(v)
    return v


TextStep = Annotated[Step, BeforeValidator(_text_to_step)]


class Checkpoint(_Model):
    """A block run every N iterations of its loop, at listed iterations, before or after."""

    label: str | None = None
    every: Annotated[int, Field(ge=1)] | None = None
    at: list[int] = Field(default_factory=list)
    position: Literal["before", "after"] = "after"
    counts_as_cycle: bool = True
    steps: list[Node] = Field(min_length=1)

    @field_validator("at")
    @classmethod
    def _from_one(cls, at: list[int]) -> list[int]:
        if 0 in at:
            raise ValueError(
                "iterations count from 1, there is no iteration 0: to run this block before "
                "the loop's first iteration write 'at: [1]' with 'position: before'"
            )
        if any(a < 0 for a in at):
            raise ValueError(f"iterations count from 1, got {min(at)}")
        return at

    @model_validator(mode="after")
    def _when(self) -> Checkpoint:
        if self.every is None and not self.at:
            raise ValueError("a checkpoint needs 'every' or 'at'")
        return self

    def fires_at(self, iteration: int) -> bool:
        return (self.every is not None and iteration % self.every == 0) or iteration in self.at

    def fires_within(self, n: int) -> int:
        """How many of a loop's first ``n`` iterations this checkpoint fires at."""
        every = n // self.every if self.every is not None else 0
        extra = {a for a in self.at if a <= n and (self.every is None or a % self.every != 0)}
        return every + len(extra)


class Loop(_Model):
    """Repeat ``steps`` ``repeat`` times and/or until a condition on the last cycle holds."""

    label: str | None = None
    repeat: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    until: list[LoopCondition] = Field(default_factory=list)
    max_repeat: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    steps: list[Node] = Field(min_length=1)
    checkpoints: list[Checkpoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounded(self) -> Loop:
        if self.repeat is None and not self.until:
            raise ValueError("a loop needs 'repeat' or 'until'")
        if self.repeat is None and self.max_repeat is None:
            raise ValueError("a loop with only 'until' needs max_repeat as a bound")
        for cp in self.checkpoints:
            bound = self.repeat or self.max_repeat or 0
            bad = [a for a in cp.at if a > bound]
            if bad:
                raise ValueError(f"checkpoint at {bad} is beyond the loop's {bound} iterations")
        return self

    def bound(self) -> int:
        return self.repeat if self.repeat is not None else (self.max_repeat or 0)


class Group(_Model):
    """A labelled block of steps run once."""

    label: str | None = None
    steps: list[Node] = Field(min_length=1)


Node = Annotated[
    Annotated[TextStep, Tag("text")]
    | Annotated[Step, Tag("step")]
    | Annotated[Loop, Tag("loop")]
    | Annotated[Group, Tag("group")],
    Discriminator(_node_tag),
]


class SafetyLimits(_Model):
    """The run envelope, written into the instrument before a run and watched on every record."""

    voltage_V: tuple[Voltage, Voltage] | None = None
    current_abs_A: Annotated[float, _q(Dimension.current), Field(gt=0)] | None = None
    temperature_C: tuple[Celsius, Celsius] | None = Field(default=None, alias="temperature_degC")
    furnace_max_C: Celsius | None = None
    on_violation: Literal["abort", "pause"] = "abort"

    json_input_aliases: ClassVar[dict[str, tuple[str, float]]] = {
        "current_abs_mA": ("current_abs_A", 1e-3)
    }

    @model_validator(mode="before")
    @classmethod
    def _mA(cls, data: Any) -> Any:
        if isinstance(data, dict) and "current_abs_mA" in data:
            data = dict(data)
            data["current_abs_A"] = _scale(data.pop("current_abs_mA"), 1e-3)
        return data

    @field_validator("voltage_V", "temperature_C")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"the window [{v[0]}, {v[1]}] must have min < max")
        return v


class Defaults(_Model):
    record: RecordRule = Field(default_factory=lambda: RecordRule(every_s=10.0))
    temperature_C: Celsius | None = Field(default=None, alias="temperature_degC")


@_accepts("version")
def _number_to_str(v: Any) -> Any:
    # YAML reads `version: 1` as a number; it is a label.
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f"{v:g}" if isinstance(v, float) else str(v)
    return v


Path_ = tuple[str | int, ...]


def _cell_needs(step: Any) -> list[str]:
    """What a step needs from the cell spec: '1C', 'mass' and/or 'area'."""
    needs: list[str] = []
    current = getattr(step, "current", None)
    if isinstance(current, Current):
        needs.append({"C": "1C", "A/kg": "mass", "A/m2": "area", "A": ""}[current.basis])
    conds = list(getattr(step, "until", []) or [])
    cv = getattr(step, "cv", None)
    if isinstance(cv, CVTail):
        conds.extend(cv.until)
    for c in conds:
        if isinstance(c, Condition):
            needs.append(
                {"C": "1C", "fraction": "1C", "A/kg": "mass", "Ah/kg": "mass"}.get(c.unit, "")
            )
    return [n for n in dict.fromkeys(needs) if n]


class Protocol(_Model):
    """A whole protocol: what to run, on what cell, within which limits."""

    name: str = Field(min_length=1)
    version: Annotated[str, BeforeValidator(_number_to_str)] = "1"
    source: str | None = None
    description: str | None = None
    cell: CellSpec | None = None
    limits: SafetyLimits = Field(default_factory=SafetyLimits)
    defaults: Defaults = Field(default_factory=Defaults)
    sequence: list[Node] = Field(min_length=1)

    @model_validator(mode="after")
    def _limits_for_cells(self) -> Protocol:
        if self.drives_cell():
            missing = []
            if self.limits.voltage_V is None:
                missing.append("limits.voltage_V")
            if self.limits.current_abs_A is None:
                missing.append("limits.current_abs_A (or current_abs_mA)")
            if missing:
                raise ValueError(
                    "a protocol that drives a cell needs safety limits: " + ", ".join(missing)
                )
        return self

    @model_validator(mode="after")
    def _cell_resolves(self, info: ValidationInfo) -> Protocol:
        # The YAML loader reports these itself, one per step with its file line.
        if isinstance(info.context, dict) and info.context.get("defer_cell_check"):
            return self
        issues = self.cell_issues()
        if issues:
            raise ValueError(
                "; ".join(".".join(str(p) for p in path) + ": " + msg for path, msg in issues)
            )
        return self

    def cell_issues(self) -> list[tuple[Path_, str]]:
        """Steps whose currents or conditions the cell spec cannot turn into amperes."""
        cell = self.cell
        have = {
            "1C": cell is not None
            and (
                (cell.cam_mass_mg_value() is not None and cell.c_rate_basis_mA_per_g is not None)
                or cell.nominal_capacity_mAh is not None
            ),
            "mass": cell is not None and cell.cam_mass_mg_value() is not None,
            "area": cell is not None and cell.area_cm2 is not None,
        }
        advice = {
            "1C": "a C-rate or capacity fraction needs cell.cam_mass_mg and "
            "cell.c_rate_basis_mA_per_g (or cell.nominal_capacity_mAh)",
            "mass": "a specific current or capacity (per gram) needs cell.cam_mass_mg",
            "area": "an areal current needs cell.area_cm2",
        }
        out: list[tuple[Path_, str]] = []
        for path, step in self.steps_with_paths():
            for need in _cell_needs(step):
                if not have[need]:
                    out.append((path, advice[need]))
        return out

    def steps_with_paths(self) -> list[tuple[Path_, Any]]:
        """Every step with its path in the document (``('sequence', 1, 'steps', 0)``)."""
        out: list[tuple[Path_, Any]] = []

        def walk(nodes: list[Any], prefix: Path_) -> None:
            for i, n in enumerate(nodes):
                here = (*prefix, i)
                if isinstance(n, Loop):
                    walk(n.steps, (*here, "steps"))
                    for k, cp in enumerate(n.checkpoints):
                        walk(cp.steps, (*here, "checkpoints", k, "steps"))
                elif isinstance(n, Group):
                    walk(n.steps, (*here, "steps"))
                else:
                    out.append((here, n))

        walk(self.sequence, ("sequence",))
        return out

    def steps(self) -> list[Any]:
        """Every step of the protocol in document order (checkpoints included), unexpanded."""
        out: list[Any] = []

        def walk(nodes: list[Any]) -> None:
            for n in nodes:
                if isinstance(n, Loop):
                    walk(n.steps)
                    for cp in n.checkpoints:
                        walk(cp.steps)
                elif isinstance(n, Group):
                    walk(n.steps)
                else:
                    out.append(n)

        walk(self.sequence)
        return out

    def drives_cell(self) -> bool:
        return any(
            isinstance(s, RestStep | CurrentStep | HoldStep | PulseStep | EisStep)
            for s in self.steps()
        )


Checkpoint.model_rebuild()
Loop.model_rebuild()
Group.model_rebuild()
Protocol.model_rebuild()

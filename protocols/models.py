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

import math
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .units import CurrentValue, Dimension, UnitError, parse_current, parse_quantity

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


_F = TypeVar("_F", bound=Callable[..., Any])


def _accepts(tag: str) -> Callable[[_F], _F]:
    """Mark a before-validator with the input form it accepts (for :mod:`protocols.schema`)."""

    def mark(fn: _F) -> _F:
        fn.json_input = tag  # type: ignore[attr-defined]
        return fn

    return mark


def _q(dimension: Dimension) -> Any:
    @_accepts("quantity")
    def convert(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return parse_quantity(v, dimension)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    return BeforeValidator(convert)


Finite = Annotated[float, Field(allow_inf_nan=False)]
Voltage = Annotated[float, _q(Dimension.voltage), Field(allow_inf_nan=False)]
Amps = Annotated[float, _q(Dimension.current), Field(allow_inf_nan=False)]
Seconds = Annotated[float, _q(Dimension.time), Field(allow_inf_nan=False, ge=0)]
Celsius = Annotated[float, _q(Dimension.temperature), Field(allow_inf_nan=False, ge=-273.15)]
KPerS = Annotated[float, _q(Dimension.temperature_rate), Field(allow_inf_nan=False, gt=0)]
Hertz = Annotated[float, _q(Dimension.frequency), Field(allow_inf_nan=False, gt=0)]
Sccm = Annotated[float, _q(Dimension.flow), Field(allow_inf_nan=False, ge=0)]
PositiveSeconds = Annotated[float, _q(Dimension.time), Field(allow_inf_nan=False, gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- currents


class Current(_Model):
    """A current magnitude as written: amperes, a C-rate, per CAM mass, or per area."""

    value: Annotated[float, Field(allow_inf_nan=False, gt=0)]
    basis: Literal["A", "C", "A/kg", "A/m2"] = "A"

    @model_validator(mode="before")
    @classmethod
    @_accepts("current")
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            try:
                cv = parse_current(data)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
            if cv.value < 0:
                # Sign-free language: the step's direction says charge or discharge.
                raise ValueError(
                    f"{data!r}: a current is a magnitude; charge/discharge gives the direction"
                )
            return {"value": cv.value, "basis": cv.basis}
        if isinstance(data, CurrentValue):
            return {"value": data.value, "basis": data.basis}
        return data

    def amps(self, cell: CellSpec | None) -> float:
        """The current in A for this cell. Raises ValueError when the cell lacks what's needed."""
        if self.basis == "A":
            return self.value
        if cell is None:
            raise ValueError(f"a current of {self.describe()} needs a cell (mass or capacity)")
        if self.basis == "C":
            return self.value * cell.one_c_A()
        if self.basis == "A/kg":
            return self.value * cell.cam_mass_kg()
        area = cell.area_m2()
        if area is None:
            raise ValueError(f"an areal current of {self.describe()} needs cell.area_cm2")
        return self.value * area

    def describe(self) -> str:
        if self.basis == "C":
            return f"{self.value:g}C"
        if self.basis == "A":
            return f"{self.value * 1e3:g} mA"
        if self.basis == "A/kg":
            return f"{self.value:g} mA/g"
        return f"{self.value * 0.1:g} mA/cm2"


# --------------------------------------------------------------------------- cell


class CellSpec(_Model):
    """What a protocol needs to know about the cell: enough to turn C-rates into amperes."""

    cell_id: str | None = None
    cam_mass_mg: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    composite_mass_mg: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    active_fraction: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    c_rate_basis_mA_per_g: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    nominal_capacity_mAh: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    area_cm2: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    chemistry: str | None = None
    counter_electrode: str | None = None
    sample_id: str | None = None
    pressure_MPa: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    preset: str | None = None  # simulated-cell preset name, used only on simulated stations

    @model_validator(mode="after")
    def _consistent(self) -> CellSpec:
        if self.composite_mass_mg is not None and self.active_fraction is None:
            raise ValueError("composite_mass_mg needs active_fraction (the CAM weight fraction)")
        if self.active_fraction is not None and self.composite_mass_mg is None:
            raise ValueError("active_fraction needs composite_mass_mg")
        if (
            self.cam_mass_mg is not None
            and self.composite_mass_mg is not None
            and self.active_fraction is not None
            and not math.isclose(
                self.cam_mass_mg, self.composite_mass_mg * self.active_fraction, rel_tol=1e-3
            )
        ):
            raise ValueError("cam_mass_mg disagrees with composite_mass_mg x active_fraction")
        return self

    def cam_mass_mg_value(self) -> float | None:
        if self.cam_mass_mg is not None:
            return self.cam_mass_mg
        if self.composite_mass_mg is not None and self.active_fraction is not None:
            return self.composite_mass_mg * self.active_fraction
        return None

    def cam_mass_kg(self) -> float:
        m = self.cam_mass_mg_value()
        if m is None:
            raise ValueError("the cell has no active mass (cell.cam_mass_mg)")
        return m * 1e-6

    def one_c_A(self) -> float:
        """Current for 1C: CAM mass x specific current, else the nominal capacity over 1 h."""
        m = self.cam_mass_mg_value()
        if m is not None and self.c_rate_basis_mA_per_g is not None:
            return m * 1e-3 * self.c_rate_basis_mA_per_g * 1e-3
        if self.nominal_capacity_mAh is not None:
            return self.nominal_capacity_mAh * 1e-3
        raise ValueError(
            "a C-rate needs cell.cam_mass_mg and cell.c_rate_basis_mA_per_g, "
            "or cell.nominal_capacity_mAh"
        )

    def nominal_Ah(self) -> float:
        return self.one_c_A() * 1.0

    def area_m2(self) -> float | None:
        return None if self.area_cm2 is None else self.area_cm2 * 1e-4


# --------------------------------------------------------------------------- conditions

Action = Literal["next", "end_loop", "abort", "pause", "notify"]
Quantity = Literal["voltage", "current", "time", "capacity", "dvdt", "temperature", "dtdt"]
Op = Literal[">", ">=", "<", "<=", "cross"]


class Condition(_Model):
    """One end condition. ``value`` is SI in ``unit``; relative units resolve against the cell.

    ``op='cross'`` ends when the quantity crosses ``value`` from whichever side it starts on.
    Current conditions compare the magnitude. ``action`` says what happens when it fires;
    ``goto`` names a label to continue at instead.
    """

    quantity: Quantity
    op: Op
    value: Finite
    unit: Literal["V", "A", "C", "A/kg", "s", "Ah", "fraction", "Ah/kg", "V/s", "degC", "K/s"]
    action: Action = "next"
    goto: str | None = None

    @model_validator(mode="after")
    def _unit_fits(self) -> Condition:
        allowed = {
            "voltage": {"V"},
            "current": {"A", "C", "A/kg"},
            "time": {"s"},
            "capacity": {"Ah", "fraction", "Ah/kg"},
            "dvdt": {"V/s"},
            "temperature": {"degC"},
            "dtdt": {"K/s"},
        }[self.quantity]
        if self.unit not in allowed:
            raise ValueError(f"a {self.quantity} condition cannot be in {self.unit}")
        if self.quantity in ("time", "current", "capacity") and self.value < 0:
            raise ValueError(f"a {self.quantity} limit cannot be negative")
        return self

    def si_value(self, cell: CellSpec | None) -> float:
        """The threshold in V, A, s, Ah, V/s, °C or K/s for this cell."""
        if self.unit == "C":
            if cell is None:
                raise ValueError("a C-rate condition needs a cell")
            return self.value * cell.one_c_A()
        if self.unit == "A/kg":
            if cell is None:
                raise ValueError("a specific-current condition needs a cell")
            return self.value * cell.cam_mass_kg()
        if self.unit == "fraction":
            if cell is None:
                raise ValueError("a capacity fraction needs a cell")
            return self.value * cell.nominal_Ah()
        if self.unit == "Ah/kg":
            if cell is None:
                raise ValueError("a specific capacity needs a cell")
            return self.value * cell.cam_mass_kg()
        return self.value


@_accepts("conditions")
def _parse_conditions(v: Any) -> Any:
    """Accept a condition string ("3.68 V", "< 2.0 V or C/50"), a dict, or a list of them."""
    if v is None:
        return []
    items = v if isinstance(v, list) else [v]
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            from .stepstrings import parse_conditions

            out.extend(parse_conditions(item))
        else:
            out.append(item)
    return out


Conditions = Annotated[list[Condition], BeforeValidator(_parse_conditions)]


def _directed_until(data: Any) -> Any:
    """Parse string ``until`` entries with the step's direction (a bare voltage ends a
    charge at >= and a discharge at <=); without a direction they mean 'cross'."""
    if not isinstance(data, dict) or data.get("direction") not in ("charge", "discharge"):
        return data
    until = data.get("until")
    items = until if isinstance(until, list) else [until]
    if not any(isinstance(i, str) for i in items):
        return data
    from .stepstrings import parse_conditions

    out: list[Any] = []
    for item in items:
        out.extend(parse_conditions(item, data["direction"]) if isinstance(item, str) else [item])
    return {**data, "until": out}


class RecordRule(_Model):
    """When to record a data point: every ``every_s``, or when V or I moved by the deltas."""

    every_s: Annotated[float, _q(Dimension.time), Field(gt=0, allow_inf_nan=False)] | None = None
    dV_V: Annotated[float, _q(Dimension.voltage), Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, alias="dV"
    )
    dI_A: Annotated[float, _q(Dimension.current), Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, alias="dI"
    )

    json_input_aliases: ClassVar[dict[str, tuple[str, float]]] = {
        "dV_mV": ("dV_V", 1e-3),
        "dI_mA": ("dI_A", 1e-3),
    }

    @model_validator(mode="before")
    @classmethod
    def _mV(cls, data: Any) -> Any:
        # dV_mV and dI_mA are accepted for readability; stored in V and A.
        if isinstance(data, dict):
            data = dict(data)
            if "dV_mV" in data:
                data["dV_V"] = _scale(data.pop("dV_mV"), 1e-3)
            if "dI_mA" in data:
                data["dI_A"] = _scale(data.pop("dI_mA"), 1e-3)
        return data


def _scale(v: Any, factor: float) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v * factor
    return v


# --------------------------------------------------------------------------- steps


class _StepBase(_Model):
    label: str | None = None
    record: RecordRule | None = None
    temperature_C: Celsius | None = Field(default=None, alias="temperature_degC")
    text: str | None = Field(default=None, description="the step string this step came from")


class RestStep(_StepBase):
    """Open circuit. With ``measure_ocv`` the relaxed voltage at the end is reported (OCV)."""

    step: Literal["rest"] = "rest"
    duration_s: Seconds | None = None
    until: Conditions = Field(default_factory=list)
    measure_ocv: bool = False

    @model_validator(mode="after")
    def _ends(self) -> RestStep:
        if self.duration_s is None and not self.until:
            raise ValueError("a rest needs a duration or an end condition")
        return self


class CVTail(_Model):
    """The constant-voltage part of a CC-CV step. The voltage defaults to the CC cut-off."""

    voltage_V: Voltage | None = None
    duration_s: Seconds | None = None
    until: Conditions = Field(default_factory=list)


class CurrentStep(_StepBase):
    """Constant current charge or discharge, optionally followed by a CV hold (CC-CV)."""

    step: Literal["cc"] = "cc"
    direction: Literal["charge", "discharge"]
    current: Current
    duration_s: Seconds | None = None
    until: Conditions = Field(default_factory=list)
    cv: CVTail | None = None

    _direction_until = model_validator(mode="before")(_directed_until)

    @model_validator(mode="after")
    def _ends(self) -> CurrentStep:
        if self.duration_s is None and not self.until:
            raise ValueError(
                f"a {self.direction} needs an end: a duration or 'until' a voltage, "
                "capacity or time"
            )
        if (
            self.cv is not None
            and self.cv.voltage_V is None
            and not any(c.quantity == "voltage" for c in self.until)
        ):
            raise ValueError("a CV tail needs a voltage (or a voltage cut-off on the CC part)")
        if self.cv is not None and self.cv.duration_s is None and not self.cv.until:
            raise ValueError("a CV tail needs an end: a duration or 'until' a current")
        return self

    def cv_voltage_V(self) -> float | None:
        if self.cv is None:
            return None
        if self.cv.voltage_V is not None:
            return self.cv.voltage_V
        for c in self.until:
            if c.quantity == "voltage":
                return c.value
        return None


class HoldStep(_StepBase):
    """Constant voltage hold."""

    step: Literal["cv"] = "cv"
    voltage_V: Voltage
    duration_s: Seconds | None = None
    until: Conditions = Field(default_factory=list)

    @model_validator(mode="after")
    def _ends(self) -> HoldStep:
        if self.duration_s is None and not self.until:
            raise ValueError("a hold needs a duration or an end condition (e.g. until C/50)")
        return self


class PulseStep(_StepBase):
    """A pulse train: current for ``pulse_s``, rest for ``rest_s``, repeated (GITT)."""

    step: Literal["pulse"] = "pulse"
    direction: Literal["charge", "discharge"]
    current: Current
    pulse_s: PositiveSeconds
    rest_s: Seconds = 0.0
    repeat: Annotated[int, Field(ge=1)] | None = None
    until: Conditions = Field(default_factory=list)

    _direction_until = model_validator(mode="before")(_directed_until)

    @model_validator(mode="after")
    def _ends(self) -> PulseStep:
        if self.repeat is None and not self.until:
            raise ValueError("a pulse train needs a repeat count or an end condition")
        return self


class EisStep(_StepBase):
    """Impedance spectrum: potentiostatic (amplitude in V) or galvanostatic (in A)."""

    step: Literal["eis"] = "eis"
    f_start_Hz: Hertz
    f_end_Hz: Hertz
    points_per_decade: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 10
    amplitude_V: Annotated[float, _q(Dimension.voltage), Field(gt=0, le=1)] | None = None
    amplitude_A: Annotated[float, _q(Dimension.current), Field(gt=0)] | None = None
    bias: Literal["ocv", "voltage", "current"] = "ocv"
    bias_V: Voltage | None = None
    bias_A: Amps | None = None
    rest_before_s: Seconds = 0.0
    on_interrupt: Literal["repeat", "abort", "skip"] = "repeat"

    @model_validator(mode="after")
    def _valid(self) -> EisStep:
        if (self.amplitude_V is None) == (self.amplitude_A is None):
            raise ValueError("give exactly one of amplitude_V (PEIS) or amplitude_A (GEIS)")
        if self.f_start_Hz == self.f_end_Hz:
            raise ValueError("f_start_Hz and f_end_Hz must differ")
        if self.bias == "voltage" and self.bias_V is None:
            raise ValueError("bias 'voltage' needs bias_V")
        if self.bias == "current" and self.bias_A is None:
            raise ValueError("bias 'current' needs bias_A")
        return self

    def frequencies_Hz(self) -> list[float]:
        import numpy as np

        decades = abs(math.log10(self.f_start_Hz) - math.log10(self.f_end_Hz))
        n = max(2, round(decades * self.points_per_decade) + 1)
        return [float(f) for f in np.geomspace(self.f_start_Hz, self.f_end_Hz, n)]


class StabilityRule(_Model):
    """Stable: within ``tolerance_K`` of the setpoint for ``hold_s``; gives up at ``timeout_s``."""

    tolerance_K: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.5
    hold_s: Seconds = 600.0
    timeout_s: Seconds | None = 7200.0
    on_timeout: Literal["abort", "continue"] = "abort"


class ChamberStep(_StepBase):
    """Set the climate chamber and (by default) wait until the temperature is stable."""

    step: Literal["chamber"] = "chamber"
    setpoint_C: Celsius
    wait: StabilityRule | None = Field(default_factory=StabilityRule)


class FurnaceStep(_StepBase):
    """One furnace programme segment: ramp at a rate to a target, dwell, or cool."""

    step: Literal["furnace"] = "furnace"
    action: Literal["ramp", "dwell", "cool"]
    target_C: Celsius | None = None
    rate_K_per_s: KPerS | None = Field(default=None, alias="rate")
    duration_s: Seconds | None = None
    tolerance_K: Annotated[float, Field(gt=0)] = 5.0

    @model_validator(mode="after")
    def _valid(self) -> FurnaceStep:
        if self.action == "ramp" and (self.target_C is None or self.rate_K_per_s is None):
            raise ValueError("a ramp needs target_C and a rate (e.g. '2 K/min')")
        if self.action == "dwell" and self.duration_s is None:
            raise ValueError("a dwell needs duration_s")
        if self.action == "cool" and self.target_C is None:
            raise ValueError("a cool-down needs target_C (rate optional: natural cooling)")
        return self


class GasStep(_StepBase):
    """Set a gas line's flow (sccm). 0 closes it."""

    step: Literal["gas"] = "gas"
    line: str
    flow_sccm: Sccm
    gas: str | None = None
    wait_s: Seconds = 0.0


ElectricalStep = RestStep | CurrentStep | HoldStep | PulseStep
Step = Annotated[
    RestStep | CurrentStep | HoldStep | PulseStep | EisStep | ChamberStep | FurnaceStep | GasStep,
    Field(discriminator="step"),
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
    at: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    position: Literal["before", "after"] = "after"
    counts_as_cycle: bool = True
    steps: list[Node] = Field(min_length=1)

    @model_validator(mode="after")
    def _when(self) -> Checkpoint:
        if self.every is None and not self.at:
            raise ValueError("a checkpoint needs 'every' or 'at'")
        return self

    def fires_at(self, iteration: int) -> bool:
        return (self.every is not None and iteration % self.every == 0) or iteration in self.at


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

"""Field types of the protocol language: quantities with units, currents, the cell, end
conditions and record rules (pydantic 2). :mod:`protocols.models` builds steps and
protocols from them; import from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from .units import CurrentValue, Dimension, UnitError, parse_current, parse_quantity

__all__ = [
    "Action",
    "Amps",
    "CellSpec",
    "Celsius",
    "Condition",
    "Conditions",
    "Current",
    "Finite",
    "Hertz",
    "KPerS",
    "PositiveSeconds",
    "RecordRule",
    "Sccm",
    "Seconds",
    "Voltage",
]


_F = TypeVar("_F", bound=Callable[..., Any])


#: the input form each marked before-validator accepts (read by :mod:`protocols.schema`)
INPUT_FORMS: dict[Callable[..., Any], str] = {}


def _accepts(tag: str) -> Callable[[_F], _F]:
    """Mark a before-validator with the input form it accepts (for :mod:`protocols.schema`)."""

    def mark(fn: _F) -> _F:
        INPUT_FORMS[fn] = tag
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

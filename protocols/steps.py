"""The step models of the protocol language (pydantic 2): rest, constant current (with an
optional CV tail), voltage hold, pulse train, EIS, chamber, furnace and gas steps.
Import them from :mod:`protocols.models`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .fields import (
    Amps,
    Celsius,
    Conditions,
    Current,
    Hertz,
    KPerS,
    PositiveSeconds,
    RecordRule,
    Sccm,
    Seconds,
    Voltage,
    _directed_until,
    _Model,
    _q,
)
from .units import Dimension

__all__ = [
    "CVTail",
    "ChamberStep",
    "CurrentStep",
    "EisStep",
    "ElectricalStep",
    "FurnaceStep",
    "GasStep",
    "HoldStep",
    "PulseStep",
    "RestStep",
    "StabilityRule",
    "Step",
]

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

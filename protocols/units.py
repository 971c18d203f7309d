"""Quantities with units, as people write them in protocols.

Everything inside labrig is SI (A, V, s, Ah, °C for temperatures, Hz, sccm for gas flow).
This module turns what a scientist writes ("0.1C", "C/20", "190 mA/g", "1.6 mA",
"2 K/min", "118.5 sccm", "7 MHz", "10 mV", "30 min", "45 °C") into those numbers and
checks the dimension. Pint does the unit arithmetic; the lab's special forms (C-rates,
``degC`` spelled with a degree sign, PyBaMM's ``m`` for minutes) are handled here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

__all__ = [
    "CurrentValue",
    "Dimension",
    "UnitError",
    "parse_current",
    "parse_quantity",
]


class UnitError(ValueError):
    """A quantity could not be read or has the wrong dimension."""


class Dimension(StrEnum):
    """The dimensions protocols use, each with the SI unit labelled values are stored in."""

    voltage = "V"
    current = "A"
    time = "s"
    charge = "Ah"
    specific_current = "A/kg"  # mA/g is numerically A/kg
    areal_current = "A/m**2"
    specific_charge = "Ah/kg"  # mAh/g is numerically Ah/kg
    mass = "kg"
    area = "m**2"
    temperature = "degC"
    temperature_rate = "K/s"
    flow = "sccm"
    frequency = "Hz"
    resistance = "ohm"
    power = "W"
    voltage_rate = "V/s"
    pressure = "Pa"
    energy = "Wh"


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY_RE = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>.*?)\s*$")
_C_RATE_RE = re.compile(rf"^\s*(?:(?P<num>{_NUMBER})\s*C|C\s*/\s*(?P<den>{_NUMBER}))\s*$")
# What a unit may look like before pint sees it: names, one-digit powers, / and *.
# Pint evaluates its unit strings as expressions ("V**(10**10**10)" never returns), so
# text from protocol files is held to this shape first.
_UNIT_FACTOR = r"[A-Za-zµμ°ºΩ℃]+(?:(?:\^|\*\*)?-?\d)?"
_UNIT_SHAPE_RE = re.compile(rf"^{_UNIT_FACTOR}(?:\s*[/*·]\s*{_UNIT_FACTOR})*$")
_MAX_UNIT_LEN = 24

# Spellings people use that pint does not know, mapped to what it does.
_UNIT_ALIASES: dict[str, str] = {
    "°C": "degC",
    "ºC": "degC",
    "℃": "degC",
    "°C/min": "K/min",
    "°C/s": "K/s",
    "°C/h": "K/hour",
    "degC/min": "K/min",
    "degC/s": "K/s",
    "degC/h": "K/hour",
    "C/min": "K/min",  # only ever a ramp rate after a number with a temperature context
    "m": "minute",  # PyBaMM's minutes, kept for compatibility (a length is never meant here)
    "min": "minute",
    "mins": "minute",
    "minutes": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "hours": "hour",
    "sec": "second",
    "secs": "second",
    "seconds": "second",
    "d": "day",
    "days": "day",
    "Ohm": "ohm",
    "Ω": "ohm",
    "kΩ": "kohm",
    "mΩ": "mohm",
    "cm2": "cm**2",
    "mm2": "mm**2",
    "m2": "m**2",
    "mA/cm2": "mA/cm**2",
    "uA/cm2": "uA/cm**2",
    "µA/cm2": "uA/cm**2",
    "sccm": "sccm",
    "slpm": "slpm",
}


@lru_cache(maxsize=1)
def _registry() -> Any:
    import pint

    ureg: Any = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
    # Standard cubic centimetres per minute: a mass flow expressed as gas volume at
    # standard conditions. We keep it as its own dimension so nobody mixes it with
    # a volumetric flow by accident.
    ureg.define("sccm = [standard_flow]")
    ureg.define("slpm = 1000 * sccm")
    return ureg


@lru_cache(maxsize=4096)
def _affine(unit: str, dimension: Dimension) -> tuple[float, float] | str:
    """``(scale, offset)`` taking ``unit`` to the SI unit of ``dimension``, or why not.

    Cached per unit (failures too): pint conversions are slow, and a parser that tries
    several dimensions in turn would otherwise pay for every miss again.
    """
    ureg = _registry()
    try:
        zero = float(ureg.Quantity(0.0, unit).to(dimension.value).magnitude)
        one = float(ureg.Quantity(1.0, unit).to(dimension.value).magnitude)
    except Exception as exc:  # pint raises several unrelated types
        return _describe(exc)
    return one - zero, zero


def _parse_cached(text: str, dimension: Dimension) -> float:
    m = _QUANTITY_RE.match(text)
    if m is None:
        raise UnitError(f"{text!r} is not a number followed by a unit")
    number = float(m.group("num"))
    unit = m.group("unit")
    if not math.isfinite(number):
        raise UnitError(f"{text!r} is not a finite number")
    if unit == "":
        raise UnitError(f"{text!r} has no unit; write it as e.g. '{number} {dimension.value}'")
    if len(unit) > _MAX_UNIT_LEN or not _UNIT_SHAPE_RE.match(unit):
        raise UnitError(f"{text!r}: {unit!r} is not a unit")
    unit = _UNIT_ALIASES.get(unit, unit)
    unit = unit.replace("µ", "u").replace("μ", "u").replace("°", "deg").replace("·", "*")
    conv = _affine(unit, dimension)
    if isinstance(conv, str):
        raise UnitError(f"{text!r} is not a {dimension.name.replace('_', ' ')} ({conv})")
    scale, offset = conv
    value = number * scale + offset if offset else number * scale
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite number")
    return value


def _describe(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "DimensionalityError":
        return "wrong dimension"
    if name == "UndefinedUnitError":
        return "unknown unit"
    return str(exc).splitlines()[0] if str(exc) else name


def parse_quantity(value: str | float | int, dimension: Dimension) -> float:
    """Return ``value`` in the SI unit of ``dimension``.

    A bare number is taken to be in that unit already. Strings must carry a unit.

    >>> parse_quantity("10 mV", Dimension.voltage)
    0.01
    >>> parse_quantity("2 K/min", Dimension.temperature_rate)  # doctest: +ELLIPSIS
    0.0333...
    """
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a {dimension.name}")
    if isinstance(value, int | float):
        v = float(value)
        if not math.isfinite(v):
            raise UnitError(f"{value!r} is not a finite number")
        return v
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a quantity")
    return _parse_cached(value.strip(), dimension)


@dataclass(frozen=True)
class CurrentValue:
    """A current as written: absolute, a C-rate, specific (per CAM mass) or areal."""

    value: float
    basis: str  # "A" | "C" | "A/kg" | "A/m2"


def parse_current(text: str | float | int) -> CurrentValue:
    """Read a current setpoint: ``1.6 mA``, ``0.1C``, ``C/20``, ``190 mA/g``, ``1 mA/cm2``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return CurrentValue(parse_quantity(text, Dimension.current), "A")
    if not isinstance(text, str):
        raise UnitError(f"{text!r} is not a current")
    m = _C_RATE_RE.match(text)
    if m is not None:
        if m.group("num") is not None:
            rate = float(m.group("num"))
        else:
            den = float(m.group("den"))
            if den == 0:
                raise UnitError(f"{text!r}: C/0 is not a rate")
            rate = 1.0 / den
        if not math.isfinite(rate):
            raise UnitError(f"{text!r} is not a finite C-rate")
        return CurrentValue(rate, "C")
    errors: list[str] = []
    for dim, basis in (
        (Dimension.current, "A"),
        (Dimension.specific_current, "A/kg"),
        (Dimension.areal_current, "A/m2"),
    ):
        try:
            return CurrentValue(parse_quantity(text, dim), basis)
        except UnitError as exc:
            errors.append(str(exc))
    raise UnitError(
        f"{text!r} is not a current (write e.g. '1.6 mA', '0.1C', 'C/20', '190 mA/g' or '1 mA/cm2')"
    )

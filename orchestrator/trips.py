"""A safety trip told in the user's terms: which limit, which value, which step and which
instrument (not the instrument's status codes alone)."""

from __future__ import annotations

from typing import Any

__all__ = ["trip_reason"]

_FIELDS = {
    "voltage": ("the cell voltage", "V", "limits.voltage_V", 1.0),
    "current": ("the current", "mA", "limits.current_abs_A", 1e3),
    "temperature": ("the cell temperature", "°C", "limits.temperature_degC", 1.0),
}


def trip_reason(
    quantity: str,
    value: float,
    limit: Any,
    *,
    step_no: int | None,
    step_label: str | None,
    first_record: bool,
) -> str:
    """'safety limit: the cell voltage was 2.21 V, below the lower limit 2.25 V of
    limits.voltage_V [2.25, 3.75], in step 1 (Charge at 0.1C until 3.68 V) ...'."""
    what, unit, field, k = _FIELDS.get(quantity, (quantity, "", quantity, 1.0))
    shown = abs(value) * k if quantity == "current" else value * k
    if isinstance(limit, list | tuple) and len(limit) == 2:
        lo, hi = (float(x) * k for x in limit)
        side, edge = ("below the lower", lo) if value * k < lo else ("above the upper", hi)
        where = f"{side} limit {edge:g} {unit} of {field} [{lo:g}, {hi:g}]"
    else:
        where = f"above {field} ({float(limit) * k:g} {unit})"
    text = f"safety limit: {what} was {shown:.4g} {unit}, {where}"
    if step_no is not None:
        text += f", in step {step_no}" + (f" ({step_label})" if step_label else "")
    if first_record and step_no == 1:
        text += "; that is the cell as connected, before any current: it rests outside the window"
    return text + "."

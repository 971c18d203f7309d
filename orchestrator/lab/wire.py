"""JSON forms of the capability types, for the agents' instrument API.

Pure functions, tested by round trip. Arrays travel as lists of floats (non-finite
values as null); every method a remote client may call is listed in :data:`METHODS`
with how its arguments and result are decoded, so nothing else is ever dispatched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from labrig.drivers.capabilities import (
    RECORD_COLUMNS,
    BlockResult,
    ChannelLimits,
    ChannelState,
    ChannelStatus,
    ChannelStep,
    EisRequest,
    EisResult,
    EndCondition,
    RecordBatch,
    RecordRule,
    StepEnd,
)

__all__ = ["METHODS", "WireFormatError", "decode_result", "encode_result"]


class WireFormatError(ValueError):
    """A message that does not have the documented shape."""


def _f(x: Any) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def _arr(xs: Any) -> list[float | None]:
    return [_f(x) for x in np.asarray(xs, dtype=np.float64).tolist()]


def _unarr(xs: Any, dtype: Any = np.float64) -> Any:
    if not isinstance(xs, list):
        raise WireFormatError("expected a list of numbers")
    return np.asarray([math.nan if x is None else x for x in xs], dtype=dtype)


# ---------------------------------------------------------------------- objects
def eis_request_to(r: EisRequest) -> dict[str, Any]:
    d = asdict(r)
    d["frequencies_Hz"] = list(r.frequencies_Hz)
    return d


def eis_request_from(d: dict[str, Any]) -> EisRequest:
    try:
        return EisRequest(**{**d, "frequencies_Hz": tuple(float(f) for f in d["frequencies_Hz"])})
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"EIS request: {exc}") from None


def eis_result_to(r: EisResult) -> dict[str, Any]:
    return {
        "frequency_Hz": _arr(r.frequency_Hz),
        "z_real_ohm": _arr(r.z_real_ohm),
        "z_imag_ohm": _arr(r.z_imag_ohm),
        "dc_voltage_V": _f(r.dc_voltage_V),
        "duration_s": float(r.duration_s),
    }


def eis_result_from(d: dict[str, Any]) -> EisResult:
    try:
        return EisResult(
            frequency_Hz=_unarr(d["frequency_Hz"]),
            z_real_ohm=_unarr(d["z_real_ohm"]),
            z_imag_ohm=_unarr(d["z_imag_ohm"]),
            dc_voltage_V=math.nan if d["dc_voltage_V"] is None else float(d["dc_voltage_V"]),
            duration_s=float(d["duration_s"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"EIS result: {exc}") from None


def _end_from(d: dict[str, Any]) -> EndCondition:
    return EndCondition(**d)


def step_to(s: ChannelStep) -> dict[str, Any]:
    return asdict(s)


def step_from(d: dict[str, Any]) -> ChannelStep:
    try:
        return ChannelStep(
            **{
                **d,
                "ends": tuple(_end_from(e) for e in d.get("ends", ())),
                "cv_ends": tuple(_end_from(e) for e in d.get("cv_ends", ())),
                "record": RecordRule(**d.get("record", {})),
            }
        )
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"channel step: {exc}") from None


def limits_from(d: dict[str, Any]) -> ChannelLimits:
    try:
        return ChannelLimits(**d)
    except TypeError as exc:
        raise WireFormatError(f"limits: {exc}") from None


def status_from(d: dict[str, Any]) -> ChannelStatus:
    return ChannelStatus(**{**d, "state": ChannelState(d["state"])})


def block_result_from(d: dict[str, Any]) -> BlockResult:
    return BlockResult(
        block_id=int(d["block_id"]),
        steps=tuple(StepEnd(**s) for s in d["steps"]),
        state=ChannelState(d["state"]),
        fault=d.get("fault"),
    )


def records_to(b: RecordBatch) -> dict[str, Any]:
    return {c: (getattr(b, c).tolist() if c in ("seq", "step_id") else _arr(getattr(b, c)))
            for c in RECORD_COLUMNS}  # fmt: skip


def records_from(d: dict[str, Any]) -> RecordBatch:
    cols = {c: _unarr(d[c], np.int64 if c in ("seq", "step_id") else np.float64)
            for c in RECORD_COLUMNS}  # fmt: skip
    return RecordBatch(**cols)


def _plain(x: Any) -> Any:
    """Dataclasses, enums and numbers as JSON values."""
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        return _f(x)
    if isinstance(x, ChannelState):
        return x.value
    if isinstance(x, EisResult):
        return eis_result_to(x)
    if isinstance(x, RecordBatch):
        return records_to(x)
    if hasattr(x, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(x).items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    raise WireFormatError(f"cannot send a {type(x).__name__}")


# ---------------------------------------------------------------------- methods
# capability -> method -> (decode the JSON arguments to call kwargs, decode the result)
ArgDecoder = Callable[[dict[str, Any]], dict[str, Any]]
ResultDecoder = Callable[[Any], Any]


def _none(_d: dict[str, Any]) -> dict[str, Any]:
    return {}


def _same(x: Any) -> Any:
    return x


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _steps(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "block_id": int(d["block_id"]),
        "steps": [step_from(s) for s in d["steps"]],
    }
    if "time_base_s" in d:
        out["time_base_s"] = float(d["time_base_s"])
    return out


METHODS: dict[str, dict[str, tuple[ArgDecoder, ResultDecoder]]] = {
    "impedance": {
        "measure_eis": (lambda d: {"request": eis_request_from(d["request"])}, eis_result_from),
        "measure_ocv": (lambda d: {"duration_s": float(d["duration_s"])}, _float),
        "safe_state": (_none, _same),
    },
    "cycler": {
        "set_limits": (lambda d: {"limits": limits_from(d["limits"])}, _same),
        "get_limits": (_none, limits_from),
        "start_block": (_steps, _same),
        "attach_block": (_steps, _same),
        "wait_block": (
            lambda d: {"poll_s": float(d["poll_s"]), "max_poll_s": d.get("max_poll_s")},
            block_result_from,
        ),
        "status": (_none, status_from),
        "read_records": (lambda d: {"after_seq": int(d["after_seq"])}, records_from),
        "pause": (_none, _same),
        "resume": (_none, _same),
        "safe_state": (_none, _same),
    },
    "chamber": {
        "set_temperature": (lambda d: {"celsius": float(d["celsius"])}, _same),
        "read_temperature": (_none, _float),
        "safe_state": (_none, _same),
    },
}


def decode_args(kind: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
    """The call's keyword arguments; :class:`WireFormatError` if the method is unknown."""
    table = METHODS.get(kind)
    if table is None or method not in table:
        raise WireFormatError(f"{kind} has no method {method!r}")
    try:
        return table[method][0](args)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"{method}: bad arguments: {exc}") from None


def encode_result(value: Any) -> Any:
    return _plain(value)


def decode_result(kind: str, method: str, value: Any) -> Any:
    try:
        return METHODS[kind][method][1](value)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"{method}: bad result: {exc}") from None


def encode_args(**kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if k == "request" and isinstance(v, EisRequest):
            out[k] = eis_request_to(v)
        elif k == "steps":
            out[k] = [step_to(s) for s in v]
        else:
            out[k] = _plain(v)
    return out

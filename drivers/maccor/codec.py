"""MacNet JSON-RPC codec: pure functions from typed requests to exact bytes and back.

Facts (MACCOR's MacNet manual for the Series 4000): requests are one JSON-RPC 2.0 object,
``{"jsonrpc":"2.0","method":"MacNet","params":{"FClass":F,"FNum":N,"Chan":c,...},"id":k}``
with no terminator; every reply ends in ``\\r\\n`` and echoes FClass, FNum, Chan and id.
Keys are case-sensitive, channels 0-based. Errors come back as JSON-RPC ``error`` objects
whose message is one of "Parse error", "Invalid params", "Invalid FClass", "Invalid FNum",
"Illegal value", "MacNet error".

Anything else that comes back raises :class:`InstrumentProtocolError` naming the command
and the reply; nothing here does I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError

__all__ = [
    "ES_REASON",
    "MACNET_ERRORS",
    "PROBLEM_CODES",
    "ChannelReading",
    "MacNetError",
    "SafetyLimits",
    "Stat",
    "decode_reading",
    "decode_reply",
    "decode_safety_limits",
    "decode_statuses",
    "encode_request",
    "expect_ok",
]

TERMINATOR = b"\r\n"

MACNET_ERRORS = (
    "Parse error",
    "Invalid params",
    "Invalid FClass",
    "Invalid FNum",
    "Illegal value",
    "MacNet error",
)


class Stat:
    """Channel status codes (``Stat`` of (4,7))."""

    AVAILABLE = 0
    SELECTED = 1
    ACTIVE = 2
    SUSPENDED = 3
    COMPLETED = 4
    PROBLEM = 5
    RESET = 7
    PWR_FAIL = 9
    STARTING = 12
    WAITING = 14
    FRA = 15


#: RF2 / record end-status (ES) codes to our end reasons. 134 and 135 (capacity, dV/dt)
#: are this project's reading of the manual's "other end" range: check on the unit.
ES_REASON: dict[int, str] = {
    129: "time",
    130: "test_time",
    131: "cycle",
    132: "current",
    133: "voltage",
    134: "capacity",
    135: "dvdt",
    192: "pause",
    193: "end",
}

PROBLEM_CODES = frozenset([*range(194, 200), *range(252, 256)])


class MacNetError(InstrumentError):
    """The tester answered with a JSON-RPC error (e.g. "Invalid params")."""

    def __init__(self, message: str, *, code: int | None, command: bytes, reply: bytes) -> None:
        super().__init__(f"MacNet error {message!r} (code {code}) for {command!r}")
        self.macnet_message = message
        self.code = code
        self.command = command
        self.reply = reply


def encode_request(
    fclass: int,
    fnum: int,
    chan: int,
    request_id: int,
    params: Mapping[str, Any] | None = None,
) -> bytes:
    """The exact bytes of one MacNet request (compact JSON, no terminator): what
    ``json.dumps(..., separators=(",", ":"), ensure_ascii=True, allow_nan=False)`` gives,
    written out directly (a thousand channels send hundreds of requests a second)."""
    parts = [f'{{"jsonrpc":"2.0","method":"MacNet","params":{{"FClass":{fclass:d}'
             f',"FNum":{fnum:d},"Chan":{chan:d}']  # fmt: skip
    for key, value in (params or {}).items():
        if key in _SET_BY_FUNCTION:
            raise ValueError(f"parameter {key!r} is set by the function itself")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"parameter {key!r} must be finite, got {value!r}")
        parts.append(f",{_json_text(key)}:{_json_value(value)}")
    parts.append(f'}},"id":{request_id:d}}}')
    return "".join(parts).encode("ascii")


_SET_BY_FUNCTION = frozenset(("FClass", "FNum", "Chan"))


def _json_text(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"parameter names are text, got {key!r}")
    return encode_basestring_ascii(key)


def _json_value(value: object) -> str:
    if type(value) is str:
        return encode_basestring_ascii(value)
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float:
        return float.__repr__(value)
    return _ENCODER.encode(value)  # True, None, lists, objects, subclasses: as json does


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in reply")


# made once: json.dumps / json.loads with options build a new encoder / decoder per call,
# a cost paid by every request on a station of a thousand channels
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def decode_reply(
    frame: bytes,
    *,
    command: bytes,
    fclass: int,
    fnum: int,
    chan: int,
    request_id: int,
) -> dict[str, Any]:
    """The ``result`` object of a reply to ``command``, checked against what was asked.

    Raises :class:`MacNetError` for an error reply and :class:`InstrumentProtocolError`
    for anything outside the protocol.
    """

    def bad(why: str) -> InstrumentProtocolError:
        return InstrumentProtocolError(f"MacNet reply {why}", command=command, reply=frame[:500])

    if not frame.endswith(TERMINATOR):
        raise bad("does not end in \\r\\n")
    try:
        msg = _DECODER.decode(frame[:-2].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"is not JSON ({exc})") from None
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise bad("is not a JSON-RPC 2.0 object")
    if "error" in msg:
        err = msg["error"]
        if not isinstance(err, dict) or not isinstance(err.get("message"), str):
            raise bad("has a malformed error object")
        if msg.get("id") not in (request_id, None):
            raise bad(f"answers id {msg.get('id')!r}, not {request_id}")
        code = err.get("code")
        raise MacNetError(
            err["message"],
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            command=command,
            reply=frame[:500],
        )
    if msg.get("id") != request_id or isinstance(msg.get("id"), bool):
        raise bad(f"answers id {msg.get('id')!r}, not {request_id}")
    result = msg.get("result")
    if not isinstance(result, dict):
        raise bad("has no result object")
    for key, want in (("FClass", fclass), ("FNum", fnum), ("Chan", chan)):
        got = result.get(key)
        if got != want or isinstance(got, bool):
            raise bad(f"echoes {key}={got!r}, expected {want}")
    return result


def decode_statuses(result: Mapping[str, Any], command: bytes) -> list[dict[str, Any]]:
    """The rows of a (4,1) short-status reply (one dict per channel)."""
    rows = result.get("Status")
    if not isinstance(rows, list):
        raise InstrumentProtocolError(
            "MacNet (4,1) reply has no Status list", command=command, reply=repr(result)[:300]
        )
    return [r for r in rows if isinstance(r, dict)]


def _field(result: Mapping[str, Any], key: str, kind: type, command: bytes) -> Any:
    value = result.get(key)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        try:
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(float(value))
            )
        except OverflowError:
            ok = False
    if not ok:
        raise InstrumentProtocolError(
            f"MacNet reply field {key!r} is {value!r}, expected a {kind.__name__}",
            command=command,
            reply=json.dumps(result)[:500],
        )
    return float(value) if kind is float and value is not None else value


def expect_ok(result: Mapping[str, Any], command: bytes) -> None:
    """Raise :class:`InstrumentError` unless ``Result`` is ``"OK"``."""
    res = result.get("Result")
    if res != "OK":
        if isinstance(res, str):
            raise InstrumentError(f"MacNet refused {command!r}: {res!r}")
        raise InstrumentProtocolError(
            "MacNet reply has no Result", command=command, reply=json.dumps(result)[:500]
        )


@dataclass(frozen=True, slots=True)
class ChannelReading:
    """Everything (4,7) says about one channel."""

    chan: int
    rf1: int
    rf2: int
    stat: int
    last_rec: int
    cycle: int
    step: int  # 1-based procedure step number (0 before a test)
    test_time_s: float
    step_time_s: float
    capacity_Ah: float
    energy_Wh: float
    current_A: float
    voltage_V: float
    tester_time: str


def decode_reading(result: Mapping[str, Any], command: bytes) -> ChannelReading:
    """Typed (4,7) reading; a missing or mistyped field is a protocol error."""
    f = _field
    return ChannelReading(
        chan=f(result, "Chan", int, command),
        rf1=f(result, "RF1", int, command),
        rf2=f(result, "RF2", int, command),
        stat=f(result, "Stat", int, command),
        last_rec=f(result, "LastRecNum", int, command),
        cycle=f(result, "Cycle", int, command),
        step=f(result, "Step", int, command),
        test_time_s=f(result, "TestTime", float, command),
        step_time_s=f(result, "StepTime", float, command),
        capacity_Ah=f(result, "Capacity", float, command),
        energy_Wh=f(result, "Energy", float, command),
        current_A=f(result, "Current", float, command),
        voltage_V=f(result, "Voltage", float, command),
        tester_time=f(result, "TesterTime", str, command),
    )


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    """The (6,10) safety limits as the tester echoes them."""

    v_max_V: float
    v_min_V: float
    i_chg_A: float
    i_dis_A: float
    p_chg_W: float
    p_dis_W: float

    def params(self) -> dict[str, float]:
        return {
            "VSafeMax": self.v_max_V,
            "VSafeMin": self.v_min_V,
            "ISafeChg": self.i_chg_A,
            "ISafeDis": self.i_dis_A,
            "PBatSafeChg": self.p_chg_W,
            "PBatSafeDis": self.p_dis_W,
        }


def decode_safety_limits(result: Mapping[str, Any], command: bytes) -> SafetyLimits:
    f = _field
    return SafetyLimits(
        v_max_V=f(result, "VSafeMax", float, command),
        v_min_V=f(result, "VSafeMin", float, command),
        i_chg_A=f(result, "ISafeChg", float, command),
        i_dis_A=f(result, "ISafeDis", float, command),
        p_chg_W=f(result, "PBatSafeChg", float, command),
        p_dis_W=f(result, "PBatSafeDis", float, command),
    )

"""The control endpoint's wire format: one JSON object per line, each way.

Request ``{"op": "...", ...}``; reply ``{"ok": true, ...}`` or ``{"ok": false, "error":
"..."}``. Pure functions, so the format is tested without sockets.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_LINE", "OPS", "WireError", "decode", "encode", "error", "ok", "submit_problem"]

MAX_LINE = 16 * 1024 * 1024  # a protocol file travels inside a submit request
OPS = ("ping", "submit", "ls", "pause", "resume", "abort", "timeline", "events")


class WireError(ValueError):
    """A line that is not a valid request or reply."""


def encode(obj: dict[str, Any]) -> bytes:
    """One message as a line (no NaN: JSON has none)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One line to a message; :class:`WireError` names what is wrong."""
    if len(line) > MAX_LINE:
        raise WireError(f"message of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    except RecursionError:
        raise WireError("not a request: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise WireError("a message is a JSON object")
    return obj


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


#: how far ahead a run may be scheduled (``at``): ten years
MAX_AHEAD_S = 10 * 365.25 * 86400.0
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_POSITION = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def submit_problem(req: dict[str, Any], *, now: float) -> str | None:
    """What is wrong with a submit request's fields (``at``, ``after``, ``position``,
    ``seed``, ``run_id``), or None. ``now`` is the daemon's wall clock."""
    at = req.get("at")
    if at is not None:
        if not _is_number(at) or not math.isfinite(at):
            return "at must be a time in seconds since the Unix epoch"
        if at < 0 or at > now + MAX_AHEAD_S:
            return f"at={at!r} is not a start time within the next ten years"
    for key, pattern in (("after", _RUN_ID), ("run_id", _RUN_ID), ("position", _POSITION)):
        value = req.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            return f"{key} must be a name of letters, digits, '.', '_' or '-'"
    seed = req.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        return "seed must be a non-negative integer"
    return None

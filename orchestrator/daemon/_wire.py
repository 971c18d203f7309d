"""The control endpoint's wire format: one JSON object per line, each way.

Request ``{"op": "...", ...}``; reply ``{"ok": true, ...}`` or ``{"ok": false, "error":
"..."}``. Pure functions, so the format is tested without sockets.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_LINE", "OPS", "WireError", "decode", "encode", "error", "ok"]

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
    if not isinstance(obj, dict):
        raise WireError("a message is a JSON object")
    return obj


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}

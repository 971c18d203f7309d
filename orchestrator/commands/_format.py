"""Durations as people read them on a status line."""

from __future__ import annotations

__all__ = ["duration_text"]


def duration_text(seconds: float | None, missing: str = "–") -> str:
    """'45 s', '12 min', '5 h 07 min', '73 d 21 h' (days from one day on, never '1773:32:36')."""
    if seconds is None or seconds != seconds or seconds < 0:
        return missing
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, rem = divmod(s, 3600)
        return f"{h} h {rem // 60:02d} min"
    d, rem = divmod(s, 86400)
    return f"{d} d {rem // 3600} h"

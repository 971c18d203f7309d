"""events.jsonl: its tail after a crash, made to agree with the journal's events."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["tail_cut"]


def tail_cut(f: Any, size: int, last_ok: int, window: int = 1 << 16) -> tuple[int | None, int]:
    """Where to cut an events file so it ends with a whole line of seq <= ``last_ok``.

    Returns (byte offset to keep up to, seq of the last kept line), or (None, 0) when
    the window at the end of the file does not reach back far enough.
    """
    if size == 0:
        return 0, 0
    start = max(0, size - window)
    f.seek(start)
    tail = f.read(size - start)
    offset = size
    lines = tail.split(b"\n")
    # the part after the last newline is torn (or empty)
    offset -= len(lines[-1])
    for line in reversed(lines[:-1]):
        begin = offset - len(line) - 1
        if start > 0 and begin <= start:
            return None, 0  # the first line in the window may be cut: not trusted
        try:
            seq = int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            offset = begin
            continue
        if seq <= last_ok:
            return offset, seq
        offset = begin
    return (0, 0) if start == 0 else (None, 0)

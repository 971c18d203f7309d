"""What a simulated instrument was told, by whom and when: a JSON-lines command log.

Each line is one command as the instrument received it::

    {"t": 1764770000.123, "pid": 4242, "peer": "127.0.0.1:50412", "cmd": "6.21", "chan": 3}

``t`` is wall-clock time (seconds since the epoch, comparable across processes); ``pid``
the process that sent it (on loopback TCP looked up from ``/proc`` when the connection is
made, None when it cannot be told; the simulator's own process for in-process
instruments); ``peer`` the sender's address on a wire; ``cmd`` the command in the
instrument's own terms; ``chan`` the channel it addresses (None: the whole instrument);
``rc`` the instrument's answer code where it has one. Lines are written whole and
flushed at once, so a log read while the instrument runs ends on a complete line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["CommandLog", "loopback_peer_pid", "read_command_log"]


class CommandLog:
    """Appends one JSON line per command to ``path`` (created with its folder)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self.count = 0

    def write(
        self, cmd: str, *, chan: int | None = None, t: float | None = None, **sender: Any
    ) -> None:
        """One command (``t``: when it came, default now) from ``sender``'s fields."""
        when = time.time() if t is None else t
        line = json.dumps({"t": round(when, 6), **sender, "cmd": cmd, "chan": chan},
                          separators=(",", ":"))  # fmt: skip
        with self._lock:
            if self._fd < 0:
                return
            os.write(self._fd, (line + "\n").encode())  # one write: a whole line
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_command_log(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a command log."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill -9 of the instrument
    return out


def _hex_addr(host: str, port: int) -> str | None:
    parts = host.split(".")
    if len(parts) != 4:
        return None
    return "".join(f"{int(p):02X}" for p in reversed(parts)) + f":{port:04X}"


def loopback_peer_pid(peer: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The process holding the client end ``peer`` of a loopback TCP connection to
    ``server`` (Linux ``/proc``; None when it cannot be told)."""
    want_local, want_remote = _hex_addr(*peer[:2]), _hex_addr(*server[:2])
    if want_local is None or want_remote is None:
        return None
    inode = None
    try:
        with open("/proc/net/tcp", encoding="ascii") as f:
            for row in f.read().splitlines()[1:]:
                cols = row.split()
                if len(cols) > 9 and cols[1] == want_local and cols[2] == want_remote:
                    inode = cols[9]
                    break
    except OSError:
        return None
    if inode is None or inode == "0":
        return None
    target = f"socket:[{inode}]"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
            except OSError:
                continue
    return None

"""A small synchronous client of the daemon's control socket (used by the CLI)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from ._wire import MAX_LINE, WireError, decode, encode

__all__ = ["DaemonError", "DaemonUnavailable", "request", "socket_path"]

SOCKET_NAME = "labrig.sock"


class DaemonUnavailable(ConnectionError):
    """No daemon answers on the runs directory's control socket."""


class DaemonError(RuntimeError):
    """The daemon refused a request; the message is its reason."""


def socket_path(runs_dir: Path) -> Path:
    return runs_dir / SOCKET_NAME


def request(runs_dir: Path, message: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request and return the daemon's reply (``ok`` true), or raise."""
    path = socket_path(runs_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonUnavailable(
                f"no labrig daemon on {path} ({exc.strerror}); start one with "
                f"`labrig serve --runs {runs_dir}`"
            ) from None
        except PermissionError:
            raise DaemonUnavailable(
                f"{path}: permission denied (the daemon belongs to another user)"
            ) from None
        sock.sendall(encode(message))
        buf = bytearray()
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise DaemonUnavailable(f"the daemon on {path} closed the connection")
            buf += chunk
            if len(buf) > MAX_LINE:
                raise DaemonError("reply too large")
    except TimeoutError:
        raise DaemonUnavailable(f"the daemon on {path} did not answer in {timeout_s:g} s") from None
    finally:
        sock.close()
    try:
        reply = decode(bytes(buf))
    except WireError as exc:
        raise DaemonError(f"bad reply from the daemon: {exc}") from None
    if not reply.get("ok"):
        raise DaemonError(str(reply.get("error", "refused")))
    return reply

"""``labrig serve``: the scheduler as a long-lived service with a local control socket.

- :class:`Daemon` - ``await Daemon(station=..., runs_dir=..., sim=...).run()``.
- :func:`request` - one JSON-lines request to a running daemon (what the CLI uses).

See ``docs/daemon.md`` for the commands, the socket protocol and the stop semantics.
"""

from ._server import Daemon, DaemonStartError
from ._wire import OPS, WireError
from .client import DaemonError, DaemonUnavailable, request, socket_path

__all__ = [
    "OPS",
    "Daemon",
    "DaemonError",
    "DaemonStartError",
    "DaemonUnavailable",
    "WireError",
    "request",
    "socket_path",
]

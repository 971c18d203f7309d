"""An instrument another lab agent owns, reached through that agent's API (``driver: remote``).

```yaml
instruments:
  eis: {driver: remote, address: "lab://eis-pc/eis", options: {capability: impedance}}
positions:
  - {name: a0, cycler: cycler/0, impedance: eis/0}
```

The address names the owning agent and the instrument as its station file names it;
channels are the owner's channel numbers. Opening needs a lab: ``labrig agent`` installs
a :class:`RemoteConnector` (its proxies with lab-wide booking, fencing tokens and
deadlines, :mod:`orchestrator.lab.remote`) for the runs it starts. Anywhere else, opening
one is a clear error; with ``--sim`` an in-process simulator of the capability stands in.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any, Literal, Protocol

from pydantic import Field

from labrig.drivers.capabilities import InstrumentError

from ..registry import (
    Capability,
    Handle,
    InstrumentOptions,
    OpenRequest,
)

__all__ = [
    "CONNECTOR",
    "RemoteConnector",
    "RemoteOptions",
    "open_remote",
    "parse_remote_address",
]

SCHEME = "lab://"
_ADDRESS = re.compile(r"^lab://([A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)$")


class RemoteOptions(InstrumentOptions):
    capability: Literal["impedance", "chamber"] = Field(
        "impedance", description="what positions use of it (the owner's instrument offers it)"
    )


class RemoteConnector(Protocol):
    """Makes the capability object for one channel of another agent's instrument."""

    def channel(self, capability: Capability, agent: str, instrument: str, channel: int) -> Any: ...


#: set by ``labrig agent`` around its scheduler; None elsewhere
CONNECTOR: ContextVar[RemoteConnector | None] = ContextVar("labrig_remote", default=None)


def parse_remote_address(address: str) -> tuple[str, str]:
    """``lab://AGENT/INSTRUMENT`` -> (agent, instrument); ValueError saying the form."""
    m = _ADDRESS.match(address)
    if m is None:
        raise ValueError(
            f"address {address!r} of a remote instrument must be {SCHEME}AGENT/INSTRUMENT"
        )
    return m.group(1), m.group(2)


@contextlib.asynccontextmanager
async def open_remote(req: OpenRequest[RemoteOptions]) -> AsyncIterator[Handle]:
    try:
        agent, instrument = parse_remote_address(req.address)
    except ValueError as exc:
        raise InstrumentError(f"instrument {req.name!r}: {exc}") from None
    conn = CONNECTOR.get()
    if conn is None:
        raise InstrumentError(
            f"instrument {req.name!r} (driver remote) belongs to agent {agent}: only "
            "`labrig agent --lab URL` reaches it (or run with --sim)"
        )
    cap = Capability(req.options.capability)

    def channel(index: int) -> Any:
        return conn.channel(cap, agent, instrument, index)

    if cap is Capability.impedance:
        yield Handle(req.name, impedance=channel)
    else:
        yield Handle(req.name, chamber=channel)

"""The ``remote`` registry entry as an implementation: a lab proxy to another agent's
instrument, end to end.

The owning agent's side (a simulated PalmSens opened through its registry entry, served
by :class:`SharedInstruments` behind the agent API on uvicorn, fenced against the lab
database) and the calling agent's side (leases in the lab database, the proxy opened
through the ``remote`` entry with the agent's connector) run on the test's loop; the lab
database is a fresh one on the real PostgreSQL. Without a server the implementation is
skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from labrig.orchestrator.instruments import Capability, OpenRequest, entry
from labrig.orchestrator.instruments.hw.remote import CONNECTOR
from labrig.orchestrator.instruments.registry import InstrumentUse
from labrig.orchestrator.instruments.sim.cell import SimCell
from labrig.orchestrator.instruments.sim.station import simulate

from .implementations import Impl, Running

OWNER, CALLER, RUN = "owner-pc", "caller-pc", "conformance-run"


def start_lab() -> Any:
    from labrig.orchestrator.lab.db import connect
    from labrig.orchestrator.lab.testing import TempLab, server_reachable

    why = server_reachable()
    if why is not None:
        pytest.skip(f"no PostgreSQL for the remote proxy: {why}")
    lab = TempLab().__enter__()
    with connect(lab.url) as conn:
        conn.execute(
            "INSERT INTO agents (name, heartbeat_s, heartbeat_at, state) VALUES "
            "(%s, 86400, clock_timestamp(), 'online'), (%s, 86400, clock_timestamp(), 'online')",
            (OWNER, CALLER),
        )
        conn.execute(
            "INSERT INTO resources (resource, agent, instrument, channel) "
            "VALUES (%s, %s, 'eis', 0)",
            (f"{OWNER}:eis/0", OWNER),
        )
    return lab


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@contextlib.asynccontextmanager
async def owner(lab: Any, secret: str) -> AsyncIterator[int]:
    """The owning agent: its simulated potentiostat, shared behind its API (on the port
    it yields, published as its ``api_url``)."""
    from labrig.orchestrator.lab.api import make_app, serve_api
    from labrig.orchestrator.lab.booking import Fences
    from labrig.orchestrator.lab.db import AsyncLink, connect
    from labrig.orchestrator.lab.service import SharedInstruments

    palmsens = entry("palmsens")
    use = InstrumentUse(palmsens, "eis", None, 1, palmsens.parse_options({}), {0: "impedance"})
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(simulate(use, SimCell(None, seed=0)))
        handle = await sim.connect(stack)
        link = AsyncLink(lab.url, app="conformance owner")
        stack.push_async_callback(link.aclose)
        service = SharedInstruments(OWNER, Fences(link), check_s=1.0)
        service.add("eis", "palmsens", "impedance", [handle.impedance_channel(0)])
        app = make_app(service, secret, agent=OWNER)
        port = await stack.enter_async_context(
            serve_api(app, host="127.0.0.1", port=0, tls=None, client_certs=False)
        )

        def publish() -> None:
            with connect(lab.url) as conn:
                conn.execute("UPDATE agents SET api_url = %s WHERE name = %s",
                             (f"http://127.0.0.1:{port}", OWNER))  # fmt: skip

        await in_thread(publish)
        yield int(port)


@contextlib.asynccontextmanager
async def caller(lab: Any, secret: str, owner_wait_s: float = 60.0) -> AsyncIterator[Any]:
    """The calling agent's hub: leases and API clients; yields its connector."""
    from labrig.orchestrator.lab.booking import Leases, Notifier
    from labrig.orchestrator.lab.db import AsyncLink
    from labrig.orchestrator.lab.remote import HubConnector, RemoteHub
    from labrig.orchestrator.lab.security import mint_token

    notifier = Notifier(lab.url, app="conformance listen")
    link = AsyncLink(lab.url, app="conformance caller")
    async with asyncio.TaskGroup() as tg:
        listen = tg.create_task(notifier.run())
        try:
            leases = Leases(link, notifier, agent=CALLER, lease_s=3600.0)
            hub = RemoteHub(agent=CALLER, link=link, leases=leases,
                            token=mint_token(secret, CALLER, "agent"), ssl=True,
                            owner_wait_s=owner_wait_s)  # fmt: skip
            try:
                yield HubConnector(hub)
            finally:
                await hub.aclose()
                await link.aclose()
        finally:
            listen.cancel()


def remote_impedance() -> Impl:
    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[Running]:
        from labrig.orchestrator.lab.security import new_lab_secret

        lab = await in_thread(start_lab)
        secret = new_lab_secret()
        try:
            async with owner(lab, secret), caller(lab, secret) as connector:
                yield Running(connect_channel(connector))
        finally:
            await in_thread(lab.__exit__, None, None, None)

    # sockets to the database and the API answer from other threads and processes
    return Impl("remote", Capability.impedance, start, grace_s=0.05)


def connect_channel(connector: Any) -> Any:
    from labrig.orchestrator.lab.remote import bind_run

    remote = entry("remote")

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        # opened through the registry, as a station's ``driver: remote`` instrument is
        req = OpenRequest("eis", f"lab://{OWNER}/eis", 1, remote.parse_options({}),
                          {0: "impedance"})  # fmt: skip
        assert remote.open is not None
        token = CONNECTOR.set(connector)
        try:
            async with remote.open(req) as handle:
                ch = handle.impedance_channel(0)
                bind_run(ch, RUN)
                yield ch
        finally:
            CONNECTOR.reset(token)

    return connect

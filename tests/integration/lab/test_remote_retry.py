"""An EIS sweep on another agent's instrument while that agent restarts: the proxy tries
again after waits that grow (``remote.EIS_RETRY``), not in a tight loop, and measures
once the agent answers again.

The owner is the conformance suite's (a simulated PalmSens behind the agent API on
uvicorn, leases in a fresh lab database); between the caller and its API stands a TCP
gate that, during the outage, takes each connection and closes it at once, as an agent
whose API is not up yet fails a request, and counts them. The owner stays ``online`` in
the lab database meanwhile (a restart shorter than three heartbeats): nothing but the
backoff spaces the tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator

import numpy as np
import pytest

from labrig.drivers.capabilities import EisRequest, InstrumentError
from labrig.drivers.retry import Backoff
from labrig.orchestrator.lab.db import connect
from labrig.orchestrator.lab.remote import EIS_RETRY
from labrig.orchestrator.lab.security import new_lab_secret
from tests.conformance.remote import OWNER, caller, connect_channel, in_thread, owner, start_lab
from tests.helpers import run_virtual_strict

OUTAGE_S = 4.0  # of the loop's (virtual) time
GIVE_UP_S = 12.0  # the caller's owner_wait_s in the second test
#: a proxy retrying in a tight loop hits this many refusals long before the outage ends;
#: the gate then opens at once, so that such a regression fails quickly
CAP = 60


def tries_within(backoff: Backoff, seconds: float) -> int:
    """Tries that can start within ``seconds`` of the first when every wait is the
    shortest ``backoff`` allows (jitter only lengthens waits)."""
    shortest = dataclasses.replace(backoff, jitter=0.0)
    t, tries = 0.0, 0
    while t <= seconds:
        tries += 1
        t += shortest.delay(tries - 1)
    return tries


class Gate:
    """A TCP front of the owner's API: shut, it closes each connection at once (counted
    in ``refused``; at :data:`CAP` it sets ``capped`` and opens, when it has an API to
    open onto); open, it relays bytes both ways."""

    def __init__(self, target_port: int | None) -> None:
        self.target_port = target_port
        self.shut = True
        self.refused = 0
        self.capped = asyncio.Event()
        self.relayed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def open(self) -> None:
        self.shut = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.shut:
                self.refused += 1
                if self.refused >= CAP:
                    self.capped.set()
                    self.shut = self.target_port is None
                writer.close()
                return
            self.relayed += 1
            assert self.target_port is not None
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers += [writer, up_w]
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_pipe(reader, up_w))
                tg.create_task(_pipe(up_r, writer))
        finally:
            self._tasks.discard(task)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            yield int(server.sockets[0].getsockname()[1])
        finally:
            server.close()
            for w in self._writers:  # the relays end on their own once both sides close
                w.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _point_owner_at(lab_url: str, port: int) -> None:
    with connect(lab_url) as conn:
        conn.execute("UPDATE agents SET api_url = %s WHERE name = %s",
                     (f"http://127.0.0.1:{port}", OWNER))  # fmt: skip


def _request() -> EisRequest:
    freqs = tuple(float(f) for f in np.logspace(4, 2, 5))
    return EisRequest(frequencies_Hz=freqs, amplitude_V=0.01)


def test_eis_tries_during_an_owner_restart_are_few_and_the_sweep_is_measured() -> None:
    async def main() -> tuple[int, int, int, int]:
        lab = await in_thread(start_lab)
        secret = new_lab_secret()
        try:
            async with owner(lab, secret) as api_port:
                gate = Gate(api_port)
                async with gate.serving() as gate_port:
                    await in_thread(_point_owner_at, lab.url, gate_port)
                    async with caller(lab, secret) as connector, \
                            connect_channel(connector)() as channel:  # fmt: skip
                        asyncio.get_running_loop().call_later(OUTAGE_S, gate.open)
                        result = await channel.measure_eis(_request())
                        assert result.frequency_Hz.shape == (5,)
                        assert np.all(np.isfinite(result.z_real_ohm))
                        assert not math.isnan(result.dc_voltage_V)
                        interruptions = connector.hub.interruptions
            return gate.refused, gate.relayed, interruptions, tries_within(EIS_RETRY, OUTAGE_S)
        finally:
            await in_thread(lab.__exit__, None, None, None)

    refused, relayed, interruptions, bound = run_virtual_strict(main(), grace_s=0.05)
    # every try during the outage was refused and counted as an interruption; after the
    # outage one try got through and measured
    assert 1 <= refused <= bound < CAP, (refused, bound)
    assert interruptions == refused and relayed >= 1


def test_eis_on_an_owner_that_never_answers_is_given_up_after_owner_wait_s() -> None:
    """Online in the lab database, its API refusing every request: after ``owner_wait_s``
    (of the loop's time) the sweep ends with an error saying so, after few tries."""

    async def main() -> tuple[int, str]:
        lab = await in_thread(start_lab)
        secret = new_lab_secret()
        try:
            gate = Gate(None)
            async with gate.serving() as gate_port:
                await in_thread(_point_owner_at, lab.url, gate_port)
                async with caller(lab, secret, owner_wait_s=GIVE_UP_S) as connector, \
                        connect_channel(connector)() as channel:  # fmt: skip
                    measure = asyncio.create_task(channel.measure_eis(_request()))
                    capped = asyncio.create_task(gate.capped.wait())
                    await asyncio.wait({measure, capped}, return_when=asyncio.FIRST_COMPLETED)
                    for t in (measure, capped):
                        t.cancel()
                    await asyncio.gather(measure, capped, return_exceptions=True)
                    assert not gate.capped.is_set(), f"{gate.refused} tries: a tight loop"
                    with pytest.raises(InstrumentError) as failed:
                        measure.result()
            return gate.refused, str(failed.value)
        finally:
            await in_thread(lab.__exit__, None, None, None)

    refused, error = run_virtual_strict(main(), grace_s=0.05)
    assert 2 <= refused <= tries_within(EIS_RETRY, GIVE_UP_S), refused
    assert f"given up after {refused} tries in {GIVE_UP_S:.0f} s" in error

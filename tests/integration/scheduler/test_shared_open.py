"""An instrument several positions share is opened once for all the runs on it, one
open at a time, and closed when the last of them leaves; a failed open is that run's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from labrig.orchestrator.instruments import Handle, InstrumentUse, Opened
from labrig.orchestrator.run.instruments import uses_of
from labrig.orchestrator.scheduler import SharedInstruments, shared_instrument_names
from labrig.orchestrator.station import StationConfig

STATION = StationConfig.model_validate(
    {
        "name": "lab",
        "instruments": {
            "cycler": {"driver": "maccor", "address": "tcp://127.0.0.1:9", "channels": 8},
            "eis": {"driver": "palmsens", "address": "tcp://127.0.0.1:9", "channels": 1},
        },
        "positions": [
            {"name": f"A{i}", "cycler": f"cycler/{i}", "impedance": "eis/0"} for i in range(3)
        ],
    }
)


class CountingSource:
    """Opens nothing real: counts opens, closes and how many were open at once."""

    def __init__(self) -> None:
        self.opens = self.closes = self.open_now = self.most_at_once = 0
        self.fail_next = False

    async def open(self, stack: contextlib.AsyncExitStack, use: InstrumentUse) -> Opened:
        await stack.enter_async_context(self._held())
        return Opened(Handle(use.name))

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        self.opens += 1
        self.open_now += 1
        self.most_at_once = max(self.most_at_once, self.open_now)
        try:
            await asyncio.sleep(0.01)  # an open takes a while: others arrive meanwhile
            if self.fail_next:
                self.fail_next = False
                raise ConnectionResetError("Connection reset by peer")
            yield
        finally:
            self.open_now -= 1
            self.closes += 1


async def test_a_shared_instrument_is_opened_once_in_turn_and_closed_after_the_last() -> None:
    assert shared_instrument_names(STATION) == {"eis"}
    eis = next(u for u in uses_of(STATION, STATION.positions[0]) if u.name == "eis")
    inner = CountingSource()
    async with asyncio.TaskGroup() as tg:
        pool = SharedInstruments(STATION, lambda coro, name: tg.create_task(coro, name=name))
        source = pool.source(inner)
        gate, all_in = asyncio.Event(), asyncio.Event()
        handles: list[Handle] = []

        async def run() -> None:
            async with contextlib.AsyncExitStack() as stack:
                handles.append((await source.open(stack, eis)).handle)
                if len(handles) == 3:
                    all_in.set()
                await gate.wait()

        runs = [tg.create_task(run()) for _ in range(3)]
        await all_in.wait()
        assert inner.opens == 1 and inner.most_at_once == 1
        assert handles[0] is handles[1] is handles[2]  # one instrument, one connection
        gate.set()
        await asyncio.gather(*runs)
        assert inner.closes == 1 and inner.open_now == 0
        # a failed open is the opening run's error only; the next run opens it again
        inner.fail_next = True
        async with contextlib.AsyncExitStack() as stack:
            try:
                await source.open(stack, eis)
            except ConnectionResetError:
                pass
            else:
                raise AssertionError("the failed open was not reported")
        async with contextlib.AsyncExitStack() as stack:
            await source.open(stack, eis)
            assert inner.opens == 3
    assert inner.open_now == 0 and pool.opens == 3

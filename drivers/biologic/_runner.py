"""Load a chain of techniques on one channel, start it, and drain its data until it stops.

The instrument keeps measuring and buffering while the host is away, so a lost link is
survived by reconnecting and reading on: BL_GetData hands out every row once, in order.
Starting is made idempotent by reading the channel state back after a lost link.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from labrig.drivers.capabilities import InstrumentTimeout

from ._decode import Columns, decode
from ._device import BioLogicDevice
from ._eclib import EClib
from ._errors import LinkLost
from ._params import Technique
from ._structs import CurrentValues, State

__all__ = ["ChainRunner", "Frame"]


@dataclass(frozen=True, slots=True)
class Frame:
    """Decoded rows of one BL_GetData call."""

    technique_index: int
    technique_id: int
    process: int
    loop: int
    columns: Columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class ChainRunner:
    """Runs technique chains on ``channel`` of ``device``."""

    def __init__(self, device: BioLogicDevice, channel: int, *, poll_s: float = 10.0) -> None:
        self.device = device
        self.channel = channel
        self.poll_s = poll_s
        self.last_values: CurrentValues | None = None

    @property
    def _lib(self) -> EClib:
        return self.device.eclib

    async def load(self, techniques: Sequence[Technique]) -> None:
        """Load the chain (idempotent: a reload replaces what was loaded)."""
        self.device.verify_files(tuple(t.stem for t in techniques))
        for _attempt in range(3):
            try:
                await self._load_once(techniques)
                return
            except LinkLost:  # the chain may be incomplete: load it again from the start
                await self.device.reconnect()
        await self._load_once(techniques)

    async def _load_once(self, techniques: Sequence[Technique]) -> None:
        n = len(techniques)
        for k, t in enumerate(techniques):
            await self._lib.load_technique(
                self.device.id, self.channel, self.device.ecc_path(t.stem), t.params(),
                first=k == 0, last=k == n - 1,
            )  # fmt: skip

    async def start(self) -> None:
        """BL_StartChannel; after a lost link the channel's state says if it started."""
        try:
            await self._lib.start_channel(self.device.id, self.channel)
        except LinkLost:
            await self.device.reconnect()
            if int((await self.values()).State) == State.RUN:
                return
            await self._lib.start_channel(self.device.id, self.channel)

    async def stop(self) -> None:
        await self.device.retry(lambda: self._lib.stop_channel(self.device.id, self.channel))

    async def values(self) -> CurrentValues:
        cv: CurrentValues = await self.device.retry(
            lambda: self._lib.current_values(self.device.id, self.channel)
        )
        self.last_values = cv
        return cv

    async def drain(self, on_frame: Callable[[Frame], None]) -> CurrentValues:
        """Every row the instrument holds now; the current values of the last call."""
        while True:
            buf, info, cv = await self.device.retry(
                lambda: self._lib.get_data(self.device.id, self.channel)
            )
            self.last_values = cv
            rows = int(info.NbRows)
            if rows <= 0:
                return cv
            words = np.frombuffer(memoryview(buf), dtype=np.uint32)
            cols = decode(
                words, rows=rows, cols=int(info.NbCols), technique_id=int(info.TechniqueID),
                process=int(info.ProcessIndex), family=self.device.family,
                timebase_s=float(cv.TimeBase), start_time_s=float(info.StartTime),
            )  # fmt: skip
            on_frame(Frame(int(info.TechniqueIndex), int(info.TechniqueID),
                           int(info.ProcessIndex), int(info.loop), cols))  # fmt: skip

    async def run(
        self,
        techniques: Sequence[Technique],
        on_frame: Callable[[Frame], None],
        *,
        deadline_s: float | None = None,
        poll_s: float | None = None,
    ) -> CurrentValues:
        """Load, start, and drain until the channel stops and its data is all read."""
        await self.load(techniques)
        await self.start()
        return await self.follow(on_frame, deadline_s=deadline_s, poll_s=poll_s)

    async def follow(
        self,
        on_frame: Callable[[Frame], None],
        *,
        deadline_s: float | None = None,
        poll_s: float | None = None,
    ) -> CurrentValues:
        """Drain a running chain until it stops (``deadline_s`` bounds the whole run)."""
        loop = asyncio.get_running_loop()
        end = None if deadline_s is None else loop.time() + deadline_s
        every = self.poll_s if poll_s is None else poll_s
        while True:
            cv = await self.drain(on_frame)
            if int(cv.State) == State.STOP:
                return await self.drain(on_frame)  # rows written just before the stop
            if end is not None and loop.time() >= end:
                raise InstrumentTimeout(
                    f"{self.device.name}/{self.channel}: technique still running after "
                    f"{deadline_s:g} s"
                )
            await asyncio.sleep(every)

"""Stale-data watchdog: a cycler channel that stops producing data is a fault.

:class:`WatchedCycler` wraps a run's :class:`~drivers.capabilities.CyclerChannel`. While a
block runs it notes every sign of life it sees - new records (a higher ``seq``) or a
change of state, block or step - whether the executor or the watchdog itself asked. If
there has been no sign of life for ``periods`` record periods (and for one and a half
times the executor's collection period), the watchdog asks the channel's status itself
(under a deadline). When the channel answers a question asked ``periods`` record
periods after its last sign of life, and the answer shows none, ``wait_block`` fails
with :class:`StaleData` (an
:class:`~drivers.capabilities.InstrumentError`): the executor records a ``fault`` event,
puts every instrument in its safe state and ends the run ``failed`` - never "complete".

The record period is the running step's ``record.every_s``; a step that records only on
changes (no ``every_s``) has no period and is not watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelStatus,
    ChannelStep,
    CyclerChannel,
    InstrumentError,
    RecordBatch,
)

__all__ = ["StaleData", "WatchdogOptions", "WatchdogStats", "WatchedCycler"]

log = logging.getLogger(__name__)


class StaleData(InstrumentError):
    """No new record and no status change for the allowed number of record periods."""


@dataclass(frozen=True, slots=True)
class WatchdogOptions:
    """``periods``: record periods without a sign of life before the run is failed.

    ``status_timeout_s`` bounds the watchdog's own status request.
    """

    enabled: bool = True
    periods: float = 3.0
    status_timeout_s: float = 10.0


@dataclass(slots=True)
class WatchdogStats:
    """Shared by every watched channel of a scheduler."""

    trips: int = 0
    checks: int = 0


class WatchedCycler:
    """A CyclerChannel that fails a block whose data has gone stale (see module doc)."""

    def __init__(
        self,
        inner: CyclerChannel,
        options: WatchdogOptions,
        stats: WatchdogStats,
        *,
        look_s: float = 0.0,
    ) -> None:
        self.inner = inner
        # how often the executor collects records: between collections there is no
        # news, so the watchdog asks for itself only after half as long again
        self.look_s = look_s
        self.options = options
        self.stats = stats
        self._periods: dict[int, float | None] = {}
        self._block_period: float | None = None
        self._last_seq = -1
        self._last_sig: tuple[Any, ...] | None = None
        self._step_id: int | None = None
        self._last_life = 0.0
        self._answered = 0.0  # when the last answered status check was asked
        self._running = False

    @property
    def name(self) -> str:
        return self.inner.name

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _life(self) -> None:
        self._last_life = self._now()

    def _saw_status(self, st: ChannelStatus) -> None:
        sig = (st.state, st.block_id, st.step_id)
        if st.last_seq > self._last_seq or sig != self._last_sig:
            self._last_seq = max(self._last_seq, st.last_seq)
            self._last_sig = sig
            self._life()
        if st.step_id is not None:
            self._step_id = st.step_id

    def _saw_records(self, batch: RecordBatch) -> None:
        if len(batch) and int(batch.seq[-1]) > self._last_seq:
            self._last_seq = int(batch.seq[-1])
            self._step_id = int(batch.step_id[-1])
            self._life()

    def _period(self) -> float | None:
        if self._step_id is not None and self._step_id in self._periods:
            return self._periods[self._step_id]
        return self._block_period

    # ------------------------------------------------------------------ pass-through
    def bind_run(self, run_id: str) -> None:
        self.inner.bind_run(run_id)

    async def set_limits(self, limits: ChannelLimits) -> None:
        await self.inner.set_limits(limits)

    async def get_limits(self) -> ChannelLimits:
        return await self.inner.get_limits()

    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        await self.inner.start_block(block_id, steps)
        self._periods = {s.step_id: s.record.every_s for s in steps}
        first = steps[0].record.every_s if steps else None
        self._block_period = first
        self._step_id = steps[0].step_id if steps else None
        self._running = True
        self._life()

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        """A resumed run re-attaches to its block: watched as if it had just started."""
        await self.inner.attach_block(block_id, steps, time_base_s=time_base_s)
        self._periods = {s.step_id: s.record.every_s for s in steps}
        self._block_period = steps[0].record.every_s if steps else None
        self._step_id = steps[0].step_id if steps else None
        self._running = True
        self._life()

    async def status(self) -> ChannelStatus:
        st = await self.inner.status()
        self._saw_status(st)
        return st

    async def read_records(self, after_seq: int) -> RecordBatch:
        batch = await self.inner.read_records(after_seq)
        self._saw_records(batch)
        return batch

    async def pause(self) -> None:
        await self.inner.pause()

    async def resume(self) -> None:
        await self.inner.resume()
        self._life()

    async def safe_state(self) -> None:
        self._running = False
        await self.inner.safe_state()

    # ------------------------------------------------------------------ watched wait
    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        if not self.options.enabled:
            return await self.inner.wait_block(poll_s, max_poll_s=max_poll_s)
        self._life()
        # the watchdog needs to hear from the instrument every period: no long waits
        waiter = asyncio.ensure_future(self.inner.wait_block(poll_s))
        # No task wakes up while life is seen: a timer looks when the silence could first
        # have reached the limit, and only then is a task started to ask the channel.
        look = _Look(self, poll_s)
        try:
            await asyncio.wait((waiter, look.tripped), return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                return waiter.result()
            look.tripped.result()  # raises: the look only ever fails it
            raise AssertionError("the watchdog's look ended without a trip")
        finally:
            await look.close()
            self._running = False
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, InstrumentError):
                    await waiter


class _Look:
    """The watchdog's timer for one block: looks when the channel's silence could first
    reach the allowed limit, asks the channel's status when it has, and fails
    ``tripped`` with :class:`StaleData` on evidence of stale data."""

    def __init__(self, w: WatchedCycler, poll_s: float) -> None:
        self.w = w
        self.poll_s = poll_s
        self.loop = asyncio.get_running_loop()
        self.tripped: asyncio.Future[None] = self.loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._check: asyncio.Task[None] | None = None
        self._arm()

    def _arm(self) -> None:
        w, now = self.w, self.loop.time()
        period = w._period()
        if period is None:  # no record period (records on changes only): look again later
            at = now + max(self.poll_s, w.look_s / 2)
        else:
            # between collections there is no news: never ask before one and a half of them
            at = w._last_life + max(w.options.periods * period, 1.5 * w.look_s)
        self._timer = self.loop.call_at(max(at, now + 1e-3), self._look)

    def _look(self) -> None:
        self._timer = None
        w = self.w
        period = w._period()
        if period is not None and self.loop.time() - w._last_life >= max(
            w.options.periods * period, 1.5 * w.look_s
        ):
            # nobody has seen life for the allowed time: ask the channel ourselves
            self._check = self.loop.create_task(self._ask(period))
        else:
            self._arm()

    async def _ask(self, period: float) -> None:
        w = self.w
        w.stats.checks += 1
        asked = w._now()
        try:
            async with asyncio.timeout(w.options.status_timeout_s):
                w._saw_status(await w.inner.status())
        except (TimeoutError, InstrumentError) as exc:
            # no answer is no sign of life; the limit below decides
            log.debug("%s: watchdog status check failed: %s", w.name, exc)
        except Exception as exc:  # anything else ends the wait, as it would have inline
            self.tripped.set_exception(exc)
            return
        else:
            w._answered = asked
        limit = w.options.periods * period
        silent = w._now() - w._last_life
        # Trip on evidence only: the instrument answered a question asked when it should
        # long have shown life. A host too busy to ask (or to read the answer) in time is
        # not a stale instrument, and one that does not answer at all is ended by its
        # driver's own deadlines.
        evidence = w._answered - w._last_life >= limit
        if silent >= limit and evidence:
            w.stats.trips += 1
            self.tripped.set_exception(
                StaleData(
                    f"stale data watchdog: no new record or status change from {w.name} "
                    f"for {silent:.0f} s ({w.options.periods:g} record periods of "
                    f"{period:g} s)"
                )
            )
        else:
            self._arm()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        check, self._check = self._check, None
        if check is not None and not check.done():
            check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await check
        if not self.tripped.done():
            self.tripped.cancel()
        elif not self.tripped.cancelled():
            self.tripped.exception()  # seen (the block may have ended at the same moment)

"""Supervising one block of cycler steps: start or re-attach, poll, collect, conclude."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from labrig.drivers.capabilities import BlockResult, ChannelState, InstrumentError, StepEnd
from labrig.protocols.models import PulseStep

from ..compile import CompiledStep
from ..events import EventKind, RunState
from .ingest import RecordIngest
from .lifecycle import RunAborted
from .pacing import CollectionPacer

__all__ = ["BlockSupervisor", "EndLoop"]


class EndLoop(Exception):
    """A step ended with ``end_loop``: the enclosing loop stops."""


class BlockSupervisor(RecordIngest):
    """Hands consecutive cycler steps to the channel as one block and watches it run."""

    async def _run_block(
        self, steps: list[Any], counts: bool, resume: list[Any] | None = None
    ) -> None:
        self._check_control()
        reattach = False
        unit: dict[str, Any] = {}
        if resume is not None and self._resumed_unit is not None:
            unit, self._resumed_unit = self._resumed_unit, None
            if unit["state"] == "done":
                return  # finished before the restart; its effects are in the snapshot
            # The instrument may still be running this block: compile it with the same
            # ids and re-attach instead of starting it again.
            self.compiler.next_id = int(unit["first_step_id"])
            self.block_id = int(unit["block_id"]) - 1
            reattach = True
        first_step_id = self.compiler.next_id
        compiled: list[CompiledStep] = []
        for s in steps:
            compiled.extend(self.compiler.compile(s))
        self.block_id += 1
        block_id = self.block_id
        self._block_map = {c.channel_step.step_id: c for c in compiled}
        self._seen_steps = set()
        self.current_counts = counts
        if reattach:
            anchor = float(unit.get("anchor", self._last_run_time))
        else:
            # the block's records are dated from here (run time), on every restart too
            anchor = self.run_time()
            # (a re-attached block keeps the journal entry of its first start, so a
            # second restart still knows which events the block has produced)
            self._journal_unit_start(
                "block", block_id=block_id, first_step_id=first_step_id, anchor=anchor
            )
        self._begin_block(anchor)
        channel_steps = [c.channel_step for c in compiled]
        if reattach:
            await self.bind.cycler.attach_block(
                block_id, channel_steps, time_base_s=self._last_time
            )
        else:
            await self.bind.cycler.start_block(block_id, channel_steps)
        result = await self._supervise_block()
        await self._collect()  # the tail of the block's records
        self._after_block(result)

    async def _supervise_block(self) -> BlockResult:
        cycler = self.bind.cycler
        opts = self.options
        wait = asyncio.ensure_future(cycler.wait_block(opts.poll_s, max_poll_s=opts.max_poll_s))
        pacer = CollectionPacer(self.options.collect_s or self.options.poll_s)
        status_at, shown = self.run_time(), self._status_key()
        try:
            while True:
                done, _ = await asyncio.wait({wait}, timeout=pacer.delay(self.run_time()))
                if done:
                    return wait.result()
                await self._collect(pacer)
                # the live readings go out as telemetry with every collection; the retained
                # status follows a new step or cycle at once, and the readings every so often
                key = self._status_key()
                if key != shown or self.run_time() - status_at >= opts.status_every_s:
                    status_at, shown = self.run_time(), key
                    self._publish_status()
                if self._abort_requested is not None:
                    await cycler.safe_state()
                    raise RunAborted(self._abort_requested)
        finally:
            if not wait.done():
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError, InstrumentError):
                    await wait

    def _status_key(self) -> tuple[object, int]:
        return self.current_step, self.cycles.cycle

    async def _collect(self, pacer: CollectionPacer | None = None) -> None:
        """New records from the channel, stored; the newest goes out as telemetry unless
        the pacer has a fresher one due in a moment."""
        now = self.run_time()
        batch = await self.bind.cycler.read_records(self.last_record_seq)
        n, first, last = self._ingest(batch) if len(batch) else (0, 0.0, 0.0)
        again_soon = pacer is not None and pacer.collected(now, n, first, last)
        if n and not again_soon:
            self._send_telemetry()

    def _after_block(self, result: BlockResult) -> None:
        end_loop = False
        for end in result.steps:
            cs = self._block_map.get(end.step_id)
            self._finish_step(end, cs)
            if end.action == "end_block" and cs is not None:
                end_loop = self._ends_loop(cs, end)
            elif end.action == "notify":
                self._emit(EventKind.notify, step_id=end.step_id, reason=end.reason)
        self._block_open = False
        self._store_ended_cycles()
        self._publish_status()
        self.store.flush_events()
        self._journal_unit_done()
        if result.state == ChannelState.fault:
            self._emit(EventKind.fault, message=result.fault or "instrument fault")
            trip = self._abort_requested or ""
            if trip.startswith("safety limit"):  # the instrument acted on the same limit
                raise RunAborted(
                    f"{trip} The cycler {self.bind.cycler.name} stopped the channel on its own "
                    f"copy of the limit (it reported {result.fault}).",
                    RunState.failed,
                )
            raise RunAborted(f"instrument fault: {result.fault}", RunState.failed)
        if any(e.action == "abort" for e in result.steps):
            raise RunAborted("end condition with action abort")
        self._check_control()
        if any(e.action == "pause" for e in result.steps):
            self._pause_requested = True
        if end_loop:
            raise EndLoop()

    def _ends_loop(self, cs: CompiledStep, end: StepEnd) -> bool:
        # end_block is used for 'end_loop' actions and for the end of a pulse train.
        return not isinstance(cs.source, PulseStep)

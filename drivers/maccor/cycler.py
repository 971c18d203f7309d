"""MACCOR Series 4000 over MacNet: :class:`MaccorCycler` and its :class:`MaccorChannel` s.

A block of steps becomes a MACCOR test procedure (:mod:`.procedure`), sent with (1,6)
and started with (6,2); the tester runs it in firmware, ending steps on their conditions
and holding the (6,10) safety limits. The host polls (4,7) and reads records with (1,7)
(see :mod:`.records` for why). (6,3)/(6,4) suspend and resume, (6,5) reset is the stop
and the safe state. Each test is named for its block and for the run the channel is
bound to (``bind_run``), and a new connection learns the channel's test with (4,6), taking
only its run's for its own (see :mod:`.found`).

Record numbering: MACCOR numbers the records of each test from 1. A channel's ``seq`` is
``block_id * 2**32 + record number``, so it is unique, grows as long as block ids grow
(the executor numbers blocks in order), and can be recomputed after a restart without
any memory of earlier blocks. ``time_s`` is the test time plus the end time of the
previous block this driver saw, so it stays monotonic within one driver's life.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from labrig.drivers.capabilities import (
    BlockResult,
    ChannelLimits,
    ChannelState,
    ChannelStatus,
    ChannelStep,
    EndAction,
    EndCondition,
    InstrumentError,
    InstrumentTimeout,
    LimitsUnknown,
    RecordBatch,
    StepEnd,
)
from labrig.drivers.polling import PollPlanner
from labrig.drivers.transport import Transport, TransportClosed, transport_from_url

from .blocks import SEQ_BLOCK, Block, block_batch, end_time
from .board import StatusBoard
from .client import MacNetClient
from .codec import (
    ES_REASON,
    PROBLEM_CODES,
    ChannelReading,
    MacNetError,
    SafetyLimits,
    Stat,
    decode_reading,
    decode_safety_limits,
    decode_statuses,
    expect_ok,
)
from .found import TestInfo, block_of, block_test_name, decode_test_info, run_tag, step_ids_of
from .procedure import CompiledProcedure, compile_block
from .records import DataChunk, decode_data

__all__ = ["MaccorChannel", "MaccorCycler"]

_RUNNING = {Stat.ACTIVE, Stat.STARTING, Stat.WAITING, Stat.SELECTED}
_IDLE = {Stat.AVAILABLE, Stat.RESET}
_FAULT = {Stat.PROBLEM, Stat.PWR_FAIL}
#: headroom on the power limits: V and I limits bound the power already
_POWER_MARGIN = 1.05


class MaccorCycler:
    """A MACCOR tester reached over MacNet JSON-RPC; hands out :class:`MaccorChannel` s.

    Use as an async context manager. ``channels`` are 0-based MacNet channel numbers.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        channels: Sequence[int] | int = 1,
        name: str = "maccor",
        timeout_s: float = 5.0,
        retries: int = 2,
        reconnect_s: float = 60.0,
        records_per_read: int = 100_000,
        shared_status: bool = False,
    ) -> None:
        self.name = name
        # set by from_url: with shared_status, channels wait for block ends on the
        # tester's StatusBoard (one (4,1) poll for all of them) instead of polling (4,7)
        self.url: str | None = None
        self.shared_status = shared_status
        self._link = {"timeout_s": timeout_s, "retries": retries, "reconnect_s": reconnect_s}
        self.client = MacNetClient(
            transport, timeout_s=timeout_s, retries=retries, reconnect_s=reconnect_s
        )
        numbers = list(range(channels)) if isinstance(channels, int) else list(channels)
        self.records_per_read = records_per_read
        self.channels = [MaccorChannel(self, c) for c in numbers]

    @classmethod
    def from_url(
        cls, url: str, *, channels: Sequence[int] | int = 1, **kwargs: Any
    ) -> MaccorCycler:
        """``MaccorCycler.from_url("tcp://10.0.0.5:57570", channels=8)``."""
        tkw = {k: kwargs.pop(k) for k in ("manipulators", "backoff") if k in kwargs}
        cycler = cls(transport_from_url(url, **tkw), channels=channels, **kwargs)
        cycler.url = url
        return cycler

    def status_board(self) -> StatusBoard | None:
        """The tester's shared status poller, if this cycler uses one."""
        if not self.shared_status or self.url is None:
            return None
        return StatusBoard.for_tester(self.url, frozenset(_RUNNING), dict(self._link))

    @property
    def round_trips(self) -> int:
        return self.client.round_trips

    def channel(self, number: int) -> MaccorChannel:
        for ch in self.channels:
            if ch.number == number:
                return ch
        raise KeyError(
            f"{self.name}: no channel {number} (have {[c.number for c in self.channels]})"
        )

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> MaccorCycler:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def echo(self) -> dict[str, Any]:
        """(0,0): a round trip that proves the link."""
        return await self.client.call(0, 0, 0)

    async def version(self) -> dict[str, Any]:
        """(1,1) MacNet version."""
        return await self.client.call(1, 1, 0)

    async def system_info(self) -> dict[str, Any]:
        """(1,2) system information (``TestChannels``, ...)."""
        return await self.client.call(1, 2, 0)

    async def send_file(self, file_name: str, data: bytes) -> None:
        """(1,6): put a file (a procedure) on the tester."""
        cmd = f"(1,6) {file_name}".encode()
        params = {"FileName": file_name, "Len": len(data), "Data": data.decode("utf-8")}
        expect_ok(await self.client.call(1, 6, 0, params), cmd)

    async def statuses(self, first: int, count: int) -> list[dict[str, Any]]:
        """(4,1): short status of ``count`` channels from ``first``."""
        return decode_statuses(await self.client.call(4, 1, first, {"Len": count}), b"(4,1)")


#: the procedure of a test found on the tester (its steps are known by id only)
_FOUND_PROC = CompiledProcedure(xml=b"", steps=(), end_step=1)


class MaccorChannel:
    """One MacNet channel as a :class:`~drivers.capabilities.CyclerChannel`."""

    def __init__(self, cycler: MaccorCycler, number: int) -> None:
        self.cycler = cycler
        self.number = number
        self._block: Block | None = None
        self._previous: Block | None = None
        self._limits: SafetyLimits | None = None
        self._last: ChannelReading | None = None
        self._durations: dict[Hashable, float] = {}  # latest step durations (drivers.polling)
        self._fetching = asyncio.Lock()
        self._found: dict[int, Block] = {}  # tests found on the tester with no block attached
        self.run_tag: str | None = None  # the bound run's tag in its tests' names (.found)

    @property
    def name(self) -> str:
        return f"{self.cycler.name}/{self.number}"

    def bind_run(self, run_id: str) -> None:
        """Name this run's tests with its tag; another run's blocks are forgotten."""
        tag = run_tag(run_id)
        if tag != self.run_tag:
            self.run_tag = tag
            self._block = self._previous = None
            self._found = {}

    def _test_name(self, block_id: int) -> str:
        return block_test_name(self.number, block_id, self.run_tag)

    async def _call(
        self,
        fclass: int,
        fnum: int,
        params: dict[str, Any] | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        client = self.cycler.client
        return await client.call(fclass, fnum, self.number, params, idempotent=idempotent)

    # ------------------------------------------------------------------ limits
    async def set_limits(self, limits: ChannelLimits) -> None:
        """(6,10): write the safety limits; the reply's echo is kept as the read-back."""
        if limits.t_max_C is not None:
            # MacNet's channel limits hold no temperature: say so instead of dropping it
            raise InstrumentError(f"{self.name}: the tester's safety limits hold no temperature")
        p = limits.v_max_V * limits.i_max_A * _POWER_MARGIN
        want = SafetyLimits(limits.v_max_V, limits.v_min_V, limits.i_max_A, limits.i_max_A, p, p)
        result = await self._call(6, 10, dict(want.params()))
        self._limits = decode_safety_limits(result, b"(6,10)")

    async def get_limits(self) -> ChannelLimits:
        """The limits as the tester echoed them at (6,10). MacNet has no call that reads
        safety limits back: before set_limits has run on this connection (after a host
        restart) they are unknown (:class:`LimitsUnknown`)."""
        if self._limits is None:
            raise LimitsUnknown(
                f"{self.name}: MacNet has no call that reads safety limits back ((6,10) "
                "sets them and echoes what it set), and none were written through this "
                "connection"
            )
        lim = self._limits
        return ChannelLimits(lim.v_min_V, lim.v_max_V, min(lim.i_chg_A, lim.i_dis_A))

    # ------------------------------------------------------------------ status
    async def read(self) -> ChannelReading:
        """(4,7): everything about this channel."""
        self._last = decode_reading(await self._call(4, 7), b"(4,7)")
        return self._last

    async def test_info(self) -> TestInfo:
        """(4,6): the name of the channel's test (its data file) and of its procedure."""
        return decode_test_info(await self._call(4, 6), b"(4,6)")

    async def _tester_block(self) -> tuple[int | None, str | None]:
        """The block of the channel's test on the tester, or the test's name when it is
        not one of this run's ((None, None): no test, or a tester that refuses (4,6))."""
        try:
            name = (await self.test_info()).test_name
        except MacNetError:
            return None, None
        block = block_of(name, self.number, self.run_tag)
        return block, (name or None) if block is None else None

    async def status(self) -> ChannelStatus:
        r = await self.read()
        state, fault = _state(r)
        blk = self._block
        step_id = blk.proc.step_id(r.step) if blk is not None else None
        current = -abs(r.current_A) if r.rf1 == 2 else r.current_A
        block_id = blk.block_id if blk is not None else None
        other = None
        if blk is None:  # a new connection: the tester's test names its block, if ours
            block_id, other = await self._tester_block()
        last_seq = block_id * SEQ_BLOCK + r.last_rec if block_id is not None else 0
        return ChannelStatus(
            state=state,
            block_id=block_id,
            step_id=step_id,
            step_time_s=r.step_time_s,
            voltage_V=r.voltage_V,
            current_A=current,
            last_seq=last_seq,
            fault=fault,
            other_test=other,
        )

    # ------------------------------------------------------------------ blocks
    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        if self._block is not None and self._block.block_id == block_id:
            return  # idempotent: the same block is already on the tester
        proc = compile_block(steps, description=f"labrig {self.name} block {block_id}")
        name = self._test_name(block_id)
        await self.cycler.send_file(f"{name}.000", proc.xml)
        base = 0.0
        if self._block is not None:
            base = self._block.time_base + end_time(self._block)
            self._previous = self._block
        self._block = Block(block_id, proc, name, base)
        params = {
            "TestName": name,
            "ProcName": name,
            "Comment": f"labrig block {block_id}",
            "Crate": 1,
            "ChamberNum": 0,
            "StartCycle": 0,
            "TotCycles": 0,
            "Mass": 1,
        }
        try:
            result = await self._call(6, 2, params, idempotent=False)
        except (TransportClosed, InstrumentTimeout):
            # the start may or may not have happened: the tester's state decides
            r = await self.read()
            if r.stat in _RUNNING or (r.stat == Stat.COMPLETED and r.last_rec > 0 and r.step > 0):
                return
            result = await self._call(6, 2, params, idempotent=False)
        if result.get("Result") != "OK":
            why = await self._start_error()
            self._block = self._previous
            raise InstrumentError(f"{self.name}: start refused: {result.get('Result')!r} {why}")

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        """After a host restart: adopt the tester's test for ``block_id`` if it has one
        (running, suspended or completed), else start the block.

        The test is found by its data file (test names carry the block id), so a start
        that never reached the tester is not mistaken for one that did.
        """
        if self._block is not None and self._block.block_id == block_id:
            return
        proc = compile_block(steps, description=f"labrig {self.name} block {block_id}")
        name = self._test_name(block_id)
        if not await self._has_data_file(name):
            self._previous = None
            await self.start_block(block_id, steps)
            if self._block is not None:
                self._block.time_base = time_base_s
            return
        self._previous = None
        self._block = Block(block_id, proc, name, time_base_s)
        await self.read()

    async def _has_data_file(self, name: str) -> bool:
        """Whether the tester has the data file of test ``name`` (1,7)."""
        try:
            res = await self._call(1, 7, {"FileName": name, "Offset": 0, "Len": 1})
        except MacNetError:
            return False
        data = res.get("Data")
        return isinstance(data, str) and not data.lstrip().startswith("<")

    async def _start_error(self) -> str:
        with contextlib.suppress(InstrumentError):
            res = await self._call(6, 12)
            return str(res.get("Result", res))
        return ""

    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        blk = self._block
        if blk is None:
            raise InstrumentError(f"{self.name}: no block started")
        planner: PollPlanner | None = None
        if max_poll_s is not None and max_poll_s > poll_s:
            planner = PollPlanner(blk.proc.steps, poll_s, max_poll_s, self._durations)
        learned = -1
        board = self.cycler.status_board() if planner is None else None
        try:
            while True:
                r = await self.read()
                if r.stat not in _RUNNING:
                    break
                if board is not None:
                    await board.wait_done(self.number, poll_s)
                    continue  # the board says it ended: (4,7) for the details
                delay = poll_s
                if planner is not None:
                    if blk.last_rec != learned:  # records came in since: new step ends
                        planner.learn(_step_ends(blk, max(learned, 0)))
                        learned = blk.last_rec
                    delay = planner.interval(r.step - 1, r.step_time_s)
                await asyncio.sleep(delay)
            await self._fetch(blk, r.last_rec)
        except (InstrumentTimeout, TransportClosed) as exc:
            # the run cannot go on without the tester: leave it in its safe state
            with contextlib.suppress(InstrumentError):
                async with asyncio.timeout(self.cycler.client.timeout_s * 2):
                    await self._call(6, 5)
            raise InstrumentTimeout(f"{self.name}: lost the tester while waiting: {exc}") from exc
        blk.finished = r.stat not in _RUNNING and r.stat != Stat.SUSPENDED
        return self._result(blk, r)

    def _result(self, blk: Block, r: ChannelReading) -> BlockResult:
        ends = _step_ends(blk)
        state, fault = _state(r)
        if state == ChannelState.fault:
            return BlockResult(blk.block_id, ends, ChannelState.fault, fault)
        if r.stat == Stat.SUSPENDED:
            return BlockResult(blk.block_id, ends, ChannelState.paused)
        if ends and ends[-1].action == "pause":
            return BlockResult(blk.block_id, ends, ChannelState.paused)
        ended_early = not ends or (
            ends[-1].action not in ("end_block", "abort")
            and _next_step(blk, ends[-1]) != blk.proc.end_step
        )
        if r.stat in _IDLE and ended_early:
            # reset from outside before the block reached its End step
            return BlockResult(blk.block_id, ends, ChannelState.fault, "channel was reset")
        return BlockResult(blk.block_id, ends, ChannelState.done)

    # ------------------------------------------------------------------ records
    async def read_records(self, after_seq: int) -> RecordBatch:
        blk = self._block
        if blk is None:
            return await self._read_found(after_seq)
        need_fetch = not blk.finished or (
            self._last is not None and self._last.last_rec > blk.last_rec
        )
        if need_fetch and after_seq < (blk.block_id + 1) * SEQ_BLOCK:
            await self._fetch(blk, None)
        parts = [block_batch(b, after_seq) for b in (self._previous, blk) if b is not None]
        return RecordBatch.concat([p for p in parts if len(p)])

    async def _read_found(self, after_seq: int) -> RecordBatch:
        """No block attached (a new connection, e.g. reading a damaged run back): the
        records after ``after_seq`` of this channel's tests on the tester, from the block
        of ``after_seq`` (the first block if none) to the block of the channel's current
        test (4,6); a block whose test is not on the tester (its start never reached it)
        is passed over. If the current test is not one of this run's, the blocks are read
        in order up to the first one missing. ``time_s`` counts from the first block
        read."""
        newest, _ = await self._tester_block()
        k = max(1, after_seq // SEQ_BLOCK) if after_seq >= 0 else 1
        parts: list[RecordBatch] = []
        base = 0.0
        while newest is None or k <= newest:
            blk = self._found.get(k) or await self._find(k, base)
            k += 1
            if blk is None:
                if newest is None:
                    break
                continue
            await self._fetch(blk, None)
            base = blk.time_base + end_time(blk)
            parts.append(block_batch(blk, after_seq))
        return RecordBatch.concat([p for p in parts if len(p)])

    async def _find(self, block_id: int, time_base: float) -> Block | None:
        """The test of ``block_id`` if the tester has its data file, with the step ids
        its procedure file gives (-1 where it gives none)."""
        name = self._test_name(block_id)
        if not await self._has_data_file(name):
            return None
        blk = Block(block_id, _FOUND_PROC, name, time_base)
        try:
            res = await self._call(1, 7, {"FileName": f"{name}.000", "Offset": 0})
            text = res.get("Data")
        except MacNetError:
            text = None
        blk.step_ids = step_ids_of(text) if isinstance(text, str) else step_ids_of("")
        self._found[block_id] = blk
        return blk

    async def _fetch(self, blk: Block, upto: int | None) -> None:
        """Read the block's data file from ``blk.last_rec`` on (to ``upto`` if known).

        One reader at a time: the executor's collection and the tail read at a block's
        end may overlap, and both would ask from the same record."""
        async with self._fetching:
            await self._fetch_locked(blk, upto)

    async def _fetch_locked(self, blk: Block, upto: int | None) -> None:
        chunk_len = self.cycler.records_per_read
        while upto is None or blk.last_rec < upto:
            ask = {"FileName": blk.test_name, "Offset": blk.last_rec, "Len": chunk_len}
            res = await self._call(1, 7, ask)
            data = res.get("Data")
            if not isinstance(data, str):
                raise InstrumentError(f"{self.name}: (1,7) reply has no Data text")
            chunk = decode_data(data, command=b"(1,7)")
            if len(chunk):
                if chunk.rec[0] != blk.last_rec + 1:
                    raise InstrumentError(
                        f"{self.name}: data resumes at record {chunk.rec[0]}, "
                        f"expected {blk.last_rec + 1}"
                    )
                blk.chunks.append(chunk)
                blk.last_rec = int(chunk.rec[-1])
            if len(chunk) < chunk_len:
                break

    # ------------------------------------------------------------------ control
    async def pause(self) -> None:
        """(6,3) suspend."""
        expect_ok(await self._call(6, 3), b"(6,3)")

    async def resume(self) -> None:
        """(6,4) resume."""
        expect_ok(await self._call(6, 4), b"(6,4)")

    async def safe_state(self) -> None:
        """(6,5) reset: output off, the test ends. Idempotent."""
        expect_ok(await self._call(6, 5), b"(6,5)")


# ---------------------------------------------------------------------- helpers
def _state(r: ChannelReading) -> tuple[ChannelState, str | None]:
    if r.stat in _FAULT or r.rf2 in PROBLEM_CODES:
        return ChannelState.fault, f"Stat {r.stat}, RF1 {r.rf1}, RF2 {r.rf2}"
    if r.stat in _RUNNING:
        return ChannelState.running, None
    if r.stat == Stat.SUSPENDED:
        return ChannelState.paused, None
    if r.stat == Stat.COMPLETED:
        return ChannelState.done, None
    return ChannelState.idle, None


def _match_end(step: ChannelStep, reason: str, value: float) -> EndCondition | None:
    quantity = {"time": "time", "voltage": "voltage", "current": "current"}.get(reason, reason)
    candidates = [e for e in (*step.ends, *step.cv_ends) if e.quantity == quantity]
    for e in candidates:
        if (e.op == ">=" and value >= e.value - 1e-9) or (e.op == "<=" and value <= e.value + 1e-9):
            return e
    return candidates[0] if candidates else None


def _step_ends(blk: Block, after_rec: int = 0) -> tuple[StepEnd, ...]:
    """How the block's steps ended, from the records' end status (records after
    ``after_rec`` only: a planner learning as records come in reads each once)."""
    out: list[StepEnd] = []
    for c in blk.chunks:
        if len(c) and int(c.rec[-1]) > after_rec:
            out.extend(_chunk_ends(blk, c, after_rec))
    return tuple(out)


def _chunk_ends(blk: Block, c: DataChunk, after_rec: int) -> list[StepEnd]:
    out: list[StepEnd] = []
    for i in np.flatnonzero(c.es * (c.rec > after_rec)):
        number = int(c.step[i])
        if not 1 <= number <= len(blk.proc.steps):
            continue
        step = blk.proc.steps[number - 1]
        code = int(c.es[i])
        reason = "safety" if code in PROBLEM_CODES else ES_REASON.get(code, f"es{code}")
        action: EndAction = "next"
        if reason in ("voltage", "current", "time", "capacity", "dvdt"):
            value = {
                "voltage": float(c.voltage_V[i]),
                "current": abs(float(c.current_A[i])),
                "time": float(c.step_time_s[i]),
                "capacity": abs(float(c.step_charge_Ah[i])),
            }.get(reason, 0.0)
            end = _match_end(step, reason, value)
            if end is None and reason == "time" and step.max_duration_s is not None:
                reason = "max_duration"
            elif end is not None:
                action = end.action
        elif reason == "pause":
            action = "pause"
        elif reason == "safety":
            action = "abort"
        out.append(
            StepEnd(
                step_id=step.step_id,
                reason=reason,
                action=action,
                time_s=float(c.step_time_s[i]),
                charge_Ah=float(c.step_charge_Ah[i]),
                energy_Wh=float(c.step_energy_Wh[i]),
                end_voltage_V=float(c.voltage_V[i]),
            )
        )
    return out


def _next_step(blk: Block, end: StepEnd) -> int:
    for n, s in enumerate(blk.proc.steps, start=1):
        if s.step_id == end.step_id:
            return n + 1
    return blk.proc.end_step

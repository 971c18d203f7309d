"""Walking a protocol: node lists, loops and their checkpoints, units of work.

Positions are lists of JSON-friendly steps from the protocol's root to a unit (a block
of cycler steps, or one EIS/chamber node): ["n", index] in a node list, and
["it", iteration, part] inside a loop, part being "b" (the body), "cb<k>" or "ca<k>"
(checkpoint k before or after the body). The journal stores the position of the unit in
progress; a resumed run walks straight to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labrig.protocols.models import FurnaceStep, GasStep, Group, Loop, LoopCondition

from ..compile import is_cycler_step
from ..events import EventKind, RunState
from .block import BlockSupervisor, EndLoop
from .checkpoints import UnitHandler, unit_handler
from .lifecycle import RunAborted

__all__ = ["ProtocolWalker"]


class ProtocolWalker(BlockSupervisor):
    """Walks the protocol's nodes, handing blocks to the cycler and units to handlers."""

    async def _run_nodes(
        self, nodes: Sequence[Any], counts: bool = True, resume: list[Any] | None = None
    ) -> None:
        i = 0
        sub: list[Any] | None = None
        if resume:
            i, sub = int(resume[0][1]), resume[1:]
        while i < len(nodes):
            node = nodes[i]
            self._pos.append(["n", i])
            try:
                if is_cycler_step(node):
                    j = i
                    while j < len(nodes) and is_cycler_step(nodes[j]):
                        j += 1
                    await self._run_block(list(nodes[i:j]), counts, sub)
                    i = j - 1
                elif isinstance(node, Loop):
                    await self._run_loop(node, counts, sub)
                elif isinstance(node, Group):
                    await self._run_nodes(node.steps, counts, sub)
                elif (handler := unit_handler(node)) is not None:
                    await self._unit(handler, node, sub)
                elif isinstance(node, FurnaceStep | GasStep):
                    raise RunAborted(
                        "furnace and gas steps need a furnace station (the thermal instruments)",
                        RunState.failed,
                    )
                else:  # pragma: no cover - the models admit nothing else
                    raise RunAborted(f"unknown node {node!r}", RunState.failed)
            finally:
                self._pos.pop()
            sub = None
            await self._safe_point()
            i += 1

    async def _run_loop(self, loop: Loop, counts: bool, resume: list[Any] | None) -> None:
        label = loop.label or "loop"
        outer_label = self._block_label
        try:
            await self._loop_iterations(loop, label, counts, resume)
        finally:
            self._block_label = outer_label

    @staticmethod
    def _parts(loop: Loop, it: int) -> list[tuple[str, Any]]:
        parts: list[tuple[str, Any]] = [
            (f"cb{k}", cp)
            for k, cp in enumerate(loop.checkpoints)
            if cp.position == "before" and cp.fires_at(it)
        ]
        parts.append(("b", None))
        parts += [
            (f"ca{k}", cp)
            for k, cp in enumerate(loop.checkpoints)
            if cp.position == "after" and cp.fires_at(it)
        ]
        return parts

    async def _loop_iterations(
        self, loop: Loop, label: str, counts: bool, resume: list[Any] | None
    ) -> None:
        it = 1
        part0: str | None = None
        sub: list[Any] | None = None
        if resume:
            it, part0, sub = int(resume[0][1]), str(resume[0][2]), resume[1:]
        bound = loop.bound()
        while it <= bound:
            self._block_label = label
            last = it  # the last iteration this pass covers (several when batched)
            try:
                for part, cp in self._parts(loop, it):
                    if part.startswith("ca"):
                        continue  # after-checkpoints run after the pass, at `last`
                    if part0 is not None and part != part0:
                        continue
                    part0 = None
                    self._pos.append(["it", it, part])
                    try:
                        if cp is not None:
                            await self._checkpoint(cp, label, it, counts, sub)
                        else:
                            last = self._batch_end(loop, it)
                            body = list(loop.steps) * (last - it + 1)
                            await self._run_nodes(body, counts, sub)
                    finally:
                        self._pos.pop()
                    sub = None
                for part, cp in self._parts(loop, last):
                    if not part.startswith("ca"):
                        continue
                    if part0 is not None and part != part0:
                        continue
                    part0 = None
                    self._pos.append(["it", last, part])
                    try:
                        await self._checkpoint(cp, label, last, counts, sub)
                    finally:
                        self._pos.pop()
                    sub = None
                part0 = None
            except EndLoop:
                return
            if loop.until and self._loop_done(loop.until):
                self._emit(EventKind.notify, message=f"{label}: end condition met", iteration=last)
                return
            it = last + 1

    def _batch_end(self, loop: Loop, it: int) -> int:
        """The last iteration to hand the instrument in one block with iteration ``it``.

        A loop of plain cycler steps with no run-time end condition can go to the
        instrument several iterations at a time (as a cycler runs its own loops), up to
        the next checkpoint; ``RunOptions.batch_iterations`` sets how many.
        """
        n = self.options.batch_iterations
        if n <= 1 or loop.until or not all(is_cycler_step(s) for s in loop.steps):
            return it
        end = min(loop.bound(), it + n - 1)
        for f in range(it, end + 1):
            if f > it and any(
                cp.position == "before" and cp.fires_at(f) for cp in loop.checkpoints
            ):
                return f - 1
            if any(cp.position == "after" and cp.fires_at(f) for cp in loop.checkpoints):
                return f
        return end

    async def _checkpoint(
        self, cp: Any, label: str, it: int, counts: bool, resume: list[Any] | None
    ) -> None:
        name = cp.label or f"{label} checkpoint"
        if resume is None:
            self._emit(EventKind.checkpoint_started, checkpoint=name, iteration=it)
        self._block_label = name
        await self._run_nodes(cp.steps, counts and cp.counts_as_cycle, resume)
        self._block_label = label
        self._emit(EventKind.checkpoint_done, checkpoint=name, iteration=it)

    async def _unit(self, handler: UnitHandler, node: Any, resume: list[Any] | None) -> None:
        """Run one non-block node as a journalled unit (resumable by its policy)."""
        if resume is not None and self._resumed_unit is not None:
            unit, self._resumed_unit = self._resumed_unit, None
            if unit["state"] == "done":
                return
            if handler.interrupted(self, node):
                self._journal_unit_done()
                return
        self._journal_unit_start(handler.kind)
        await handler.run(self, node)
        self._journal_unit_done()

    def _loop_done(self, conds: list[LoopCondition]) -> bool:
        rows = {r["cycle"]: r for r in self.store.cycles}
        cur = self.cycles.current.row(self._cam_mass_g)
        latest = cur if cur["discharge_capacity_mAh"] > 0 else rows.get(self.cycles.cycle - 1)
        if latest is None:
            return False
        rows[cur["cycle"]] = cur
        for c in conds:
            key = {
                "discharge_capacity": "discharge_capacity_mAh",
                "charge_capacity": "charge_capacity_mAh",
                "coulombic_efficiency": "coulombic_efficiency_pct",
                "mean_discharge_voltage": "mean_discharge_voltage_V",
            }[c.quantity]
            v = latest.get(key)
            if v is None:
                continue
            if c.fraction is not None:
                ref = rows.get(c.reference_cycle or 1, {}).get(key)
                if ref is None:
                    continue
                threshold = c.fraction * ref
            else:
                assert c.value is not None
                threshold = c.value
                if key.endswith("_mAh"):
                    threshold *= 1e3  # value is in Ah
                elif key.endswith("_pct"):
                    threshold *= 100.0 if threshold <= 1.0 else 1.0
            if _compare(v, c.op, threshold):
                return True
        return False


def _compare(v: float, op: str, threshold: float) -> bool:
    return {
        "<": v < threshold,
        "<=": v <= threshold,
        ">": v > threshold,
        ">=": v >= threshold,
    }[op]

"""An agent serving a cycler channel to other agents' runs binds the channel to the run
each call carries, before the call: what the channel starts is named for that run."""

from __future__ import annotations

from typing import Any

from labrig.drivers.capabilities import ChannelState, ChannelStatus
from labrig.orchestrator.lab.service import SharedInstruments
from tests.helpers import run_virtual_strict


class _LiveLease:
    async def check(self, resource: str, token: int) -> float:
        return 60.0


class _Channel:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.run: str | None = None

    def bind_run(self, run_id: str) -> None:
        self.run = run_id
        self.calls.append(("bind_run", run_id))

    async def status(self) -> ChannelStatus:
        self.calls.append(("status", self.run))
        return ChannelStatus(ChannelState.idle, None, None, 0.0, 3.0, 0.0, 0)


def test_a_served_cycler_is_bound_to_the_callers_run_before_each_call() -> None:
    async def main() -> tuple[Any, Any]:
        fences: Any = _LiveLease()
        service = SharedInstruments("owner", fences, check_s=0.5)
        ch = _Channel()
        service.add("cycler", "maccor", "cycler", [ch])
        got = await service.call("caller", "cycler", 0, "status", token=1, run_id="run-a",
                                 args={})  # fmt: skip
        await service.call("caller", "cycler", 0, "status", token=2, run_id="run-b", args={})
        return got, ch.calls

    got, calls = run_virtual_strict(main())
    assert got["state"] == "idle"
    assert calls == [("bind_run", "run-a"), ("status", "run-a"),
                     ("bind_run", "run-b"), ("status", "run-b")]  # fmt: skip

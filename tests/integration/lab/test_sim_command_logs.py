"""Simulated instruments for the lab bench: ``labrig sim serve maccor --channels N
--count K`` and the command logs that say who sent each command, when."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from labrig.orchestrator.clock import run_virtual
from labrig.orchestrator.instruments import OpenRequest, entry
from labrig.orchestrator.instruments.registry import InstrumentUse
from labrig.orchestrator.instruments.sim.cell import SimCell
from labrig.orchestrator.instruments.sim.station import simulate
from labrig.orchestrator.lab.testing import spawn
from labrig.simulators.command_log import read_command_log

pytestmark = pytest.mark.timeout(120)


def test_sim_serve_maccor_channels_count_and_command_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "m.jsonl"
    args = ["sim", "serve", "maccor", "--port", "0", "--channels", "64", "--count", "2",
            "--command-log", str(log), "--speed", "100"]  # fmt: skip
    proc = spawn(args, tmp_path / "sim.log")
    try:
        first, second = proc.first_lines(2)
        assert first.startswith("tcp://") and second.startswith("tcp://") and first != second
        maccor = entry("maccor")
        assert maccor.open is not None
        opener = maccor.open

        async def main() -> None:
            for k, address in enumerate((first, second)):
                req = OpenRequest("cycler", address, 64, maccor.parse_options({}),
                                  {63: "cycler"})  # fmt: skip
                async with opener(req) as handle:
                    await handle.cycler_channel(63).status()
                    # the sender is told from a worker: wait for the log, connected
                    path = tmp_path / "logs" / f"m-{k}.jsonl"
                    while not (path.exists() and read_command_log(path)):  # noqa: ASYNC110 - another process writes it
                        await asyncio.sleep(0.05)

        asyncio.run(main())
    finally:
        proc.stop(timeout_s=15)
    for k in (0, 1):
        lines = read_command_log(tmp_path / "logs" / f"m-{k}.jsonl")
        to_63 = [x for x in lines if x["chan"] == 63]
        assert to_63, lines[:5]
        # the sender is this test's process, found from the loopback connection
        assert {x["pid"] for x in lines} == {os.getpid()}
        assert all(x["peer"].startswith("127.0.0.1:") and x["t"] > 0 for x in lines)


def test_sim_serve_refuses_what_a_simulator_does_not_offer(tmp_path: Path) -> None:
    proc = spawn(["sim", "serve", "espec", "--port", "0", "--channels", "4"], tmp_path / "e.log")
    assert proc.p.wait(60) != 0
    proc.stop()
    assert "does not offer --channels" in (tmp_path / "e.log").read_text()


def test_a_simulated_biologic_logs_every_library_call(tmp_path: Path) -> None:
    found = entry("biologic")
    use = InstrumentUse(found, "vmp", None, 2, found.parse_options({}), {0: "impedance"})
    path = tmp_path / "vmp.jsonl"

    async def main() -> float:
        async with contextlib.AsyncExitStack() as stack:
            sim = await stack.enter_async_context(
                simulate(use, SimCell(None, seed=0), command_log=str(path))
            )
            handle = await sim.connect(stack)
            return await handle.impedance_channel(0).measure_ocv(2.0)

    assert 1.0 < run_virtual(main()) < 5.0
    lines = read_command_log(path)
    starts = [x for x in lines if x["cmd"] == "BL_StartChannel"]
    assert starts and all(x["chan"] == 0 and x["rc"] == 0 for x in starts)
    assert {x["pid"] for x in lines} == {os.getpid()}


def test_an_agent_with_sim_serves_every_channel_of_a_shared_biologic(tmp_path: Path) -> None:
    from labrig.orchestrator.lab.service import open_shared_instrument
    from labrig.orchestrator.station import InstrumentConfig

    inst = InstrumentConfig.model_validate(
        {"driver": "biologic", "address": "biologic://USB0", "channels": 3}
    )
    path = tmp_path / "vmp.jsonl"

    async def main() -> list[float]:
        async with contextlib.AsyncExitStack() as stack:
            kind, chans = await open_shared_instrument(
                stack, "vmp", inst, sim=True, command_log=str(path)
            )
            assert kind == "impedance" and len(chans) == 3
            return [await c.measure_ocv(1.0) for c in chans]

    assert all(1.0 < v < 5.0 for v in run_virtual(main()))
    started = {x["chan"] for x in read_command_log(path) if x["cmd"] == "BL_StartChannel"}
    assert started == {0, 1, 2}

"""What ``labrig sim serve DRIVER`` starts, for every registry entry that has a serve:
a simulator the entry's own hardware opener reaches, offering the entry's capabilities."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest

from labrig.drivers.capabilities import ChannelState
from labrig.orchestrator.instruments import (
    ENTRIES,
    Capability,
    Handle,
    InstrumentEntry,
    OpenRequest,
    ServeOptions,
)
from tests.helpers import run_virtual_strict

SERVED = [e for e in ENTRIES if e.serve is not None]


async def _touch(handle: Handle, capability: Capability) -> float:
    """One harmless reading through the capability, as a number."""
    if capability is Capability.cycler:  # a fresh channel is idle with no records
        st = await handle.cycler_channel(0).status()
        return float(st.state == ChannelState.idle and st.last_seq == 0)
    if capability is Capability.impedance:
        return await handle.impedance_channel(0).measure_ocv(1.0)
    if capability is Capability.chamber:
        return await handle.chamber_controller(0).read_temperature()
    if capability is Capability.furnace:
        return await handle.furnace_controller(0).read_temperature()
    return await handle.gas_line(0).read_flow()


@pytest.mark.parametrize("served", SERVED, ids=[e.driver for e in SERVED])
def test_the_served_simulator_is_reached_by_the_hardware_opener(
    served: InstrumentEntry[Any],
) -> None:
    async def main() -> dict[Capability, float]:
        assert served.serve is not None and served.open is not None
        async with contextlib.AsyncExitStack() as stack:
            address = await stack.enter_async_context(served.serve(ServeOptions(port=0)))
            assert address.split("://")[0] in ("tcp", "visa", "serial")
            request = OpenRequest(served.driver, address, 1, served.parse_options({}), {0: "N2"})
            handle = await stack.enter_async_context(served.open(request))
            assert handle.offers() == served.capabilities
            return {c: await _touch(handle, c) for c in served.capabilities}

    values = run_virtual_strict(main())
    assert values and all(math.isfinite(v) and v >= 0.0 for v in values.values())
    assert values.get(Capability.cycler, 1.0) == 1.0


def test_serial_instruments_serve_on_a_pseudo_terminal() -> None:
    (alicat,) = [e for e in SERVED if e.driver == "alicat"]

    async def main() -> float:
        assert alicat.serve is not None and alicat.open is not None
        async with contextlib.AsyncExitStack() as stack:
            address = await stack.enter_async_context(alicat.serve(ServeOptions(pty=True)))
            assert address.startswith("serial:///dev/pts/")
            request = OpenRequest("mfc", address, 2, alicat.parse_options({}), {1: "O2"})
            handle = await stack.enter_async_context(alicat.open(request))
            return (await handle.gas_line(1).read_flow()) + 1.0

    assert run_virtual_strict(main()) == pytest.approx(1.0, abs=0.5)


def test_tcp_only_instruments_refuse_a_pseudo_terminal() -> None:
    (maccor,) = [e for e in SERVED if e.driver == "maccor"]

    async def main() -> None:
        assert maccor.serve is not None
        with pytest.raises(ValueError, match="TCP only"):
            async with maccor.serve(ServeOptions(pty=True)):
                pass

    run_virtual_strict(main())

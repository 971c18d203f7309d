"""MacNet has no call that reads safety limits back: after a restart an idle channel is
given the protocol's limits again and its echo compared; a channel whose test kept
running keeps those of the start (the tester refuses changes while a test is active)."""

from __future__ import annotations

import pytest

from labrig.drivers.capabilities import ChannelLimits, ChannelState, InstrumentError, LimitsUnknown
from labrig.drivers.maccor import MaccorCycler
from labrig.orchestrator.run.limits import check_resumed_limits
from labrig.protocols.models import SafetyLimits
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict

from .conftest import cycle_block

LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)
PROTOCOL_LIMITS = SafetyLimits.model_validate({"voltage_V": [2.0, 3.9], "current_abs_A": 0.01})


def test_an_active_channel_keeps_its_limits_and_the_run_says_so() -> None:
    async def main() -> None:
        async with serve_maccor(2) as srv:
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                ch = cyc.channel(1)
                await ch.set_limits(LIMITS)
                await ch.start_block(1, cycle_block(10, 0.5))
            # a new host: the tester's test runs on, the new connection wrote nothing
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                ch = cyc.channel(1)
                with pytest.raises(LimitsUnknown, match="no call that reads"):
                    await ch.get_limits()
                assert (await ch.status()).state == ChannelState.running
                (note,) = await check_resumed_limits(ch, PROTOCOL_LIMITS)
                assert note.startswith("limits kept from the start: the channel's test is running")
                assert "not read back after the restart" in note and "(6,10)" in note
                assert (await ch.status()).state == ChannelState.running  # untouched
                with pytest.raises(InstrumentError):  # what the note says of the tester
                    await ch.set_limits(ChannelLimits(2.5, 4.4, 0.05))
                await ch.safe_state()

    run_virtual_strict(main())


def test_an_idle_channel_is_given_the_limits_again_and_read_back() -> None:
    async def main() -> None:
        async with serve_maccor(2) as srv:
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                await cyc.channel(1).set_limits(ChannelLimits(2.5, 4.4, 0.05))  # changed
            async with MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
                ch = cyc.channel(1)
                (note,) = await check_resumed_limits(ch, PROTOCOL_LIMITS)
                assert note.startswith("limits written again after the restart: the channel "
                                       "was idle")  # fmt: skip
                assert "upper voltage 3.9 V" in note and "(6,10) sets them" in note
                assert (await ch.get_limits()).matches(LIMITS)
                assert srv.tester.channels[1].safety["VSafeMax"] == 3.9

    run_virtual_strict(main())

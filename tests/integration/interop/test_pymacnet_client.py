"""The public MacNet client (pymacnet) against labrig's MACCOR simulator.

pymacnet connects to the JSON port and the binary port at once, sends pretty-printed
requests over several lines, omits ``Chan`` on system-level requests and numbers channels
from 1 in its own API. It is blocking: it runs in a worker thread while the simulator
serves on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pymacnet
import pytest

from labrig.drivers.capabilities import ChannelLimits
from labrig.drivers.maccor import MaccorCycler
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict
from tests.integration.electrochem.conftest import cycle_block


def _config(srv: Any, channel: int | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server_ip": "127.0.0.1",
        "json_msg_port": srv.port,
        "bin_msg_port": srv.binary_port,
        "msg_buffer_size_bytes": 4096,
    }
    if channel is not None:
        cfg.update(
            channel=channel, test_name="", test_procedure="LR000B1", c_rate_ah=0.00168,
            v_max_safety_limit_v=3.9, v_min_safety_limit_v=2.0, i_max_safety_limit_a=0.01,
            i_min_safety_limit_a=0.01, power_safety_limit_chg_w=0.05,
            power_safety_limit_dsg_w=0.05, v_max_v=3.9, v_min_v=2.0,
            data_record_time_s=10, data_record_voltage_delta_vbys=0,
            data_record_current_delta_abys=0,
        )  # fmt: skip
    return cfg


def _close(client: Any) -> None:
    """pymacnet keeps its two sockets open for the life of the process: close them."""
    client._CyclerInterface__json_msg_socket.close()
    client._CyclerInterface__bin_msg_socket.close()


def test_pymacnet_reads_system_info_and_a_running_channel(caplog: pytest.LogCaptureFixture) -> None:
    """pymacnet sees what labrig's driver does on the same simulated tester."""

    async def main() -> None:
        async with serve_maccor(4) as srv, MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
            ch = cyc.channel(0)
            await ch.set_limits(ChannelLimits(2.0, 3.9, 0.01))
            await ch.start_block(1, cycle_block(0, 0.5))

            def client() -> tuple[Any, ...]:
                c = pymacnet.CyclerInterface(_config(srv))
                try:
                    return (
                        c.get_num_channels(),
                        c.read_system_info(),
                        c.read_general_info(),
                        c.read_channel_status(1),  # pymacnet's channel 1 is MacNet channel 0
                        c.read_channel_status(2),
                        # pymacnet subtracts 1 from every Chan it sends, its (4,1)
                        # template's 0 included: Chan -1 asks for every channel
                        c.read_all_channel_statuses(),
                    )
                finally:
                    _close(c)

            n, sysinfo, general, running, idle, every = await asyncio.to_thread(client)
            assert [(x["Stat"], x["RF1"]) for x in every] == [(2, 1), (0, 0), (0, 0), (0, 0)]
            assert n == 4
            assert sysinfo["FClass"] == 1 and sysinfo["FNum"] == 1 and "Chan" not in sysinfo
            assert general["TestChannels"] == 4 and general["SystemType"] == 0
            assert running["Stat"] == 2 and running["RF1"] == 1  # active, charging
            assert running["Chan"] == 1 and running["Step"] == 1
            assert 0 < running["Current"] < 0.01 and 2.0 < running["Voltage"] < 3.9
            assert idle["Stat"] == 0 and idle["Chan"] == 2
            assert srv.binary_port and srv.connections >= 1
            await ch.safe_state()

    with caplog.at_level(logging.ERROR, logger="pymacnet"):
        run_virtual_strict(main())
    assert not [r for r in caplog.records if r.name.startswith("pymacnet")]


def test_pymacnet_starts_and_resets_a_test_on_a_procedure_already_on_the_tester() -> None:
    """A procedure labrig put on the tester, started by the third-party client."""

    async def main() -> None:
        async with serve_maccor(2) as srv, MaccorCycler.from_url(srv.url, channels=[0]) as cyc:
            ch = cyc.channel(0)
            await ch.set_limits(ChannelLimits(2.0, 3.9, 0.01))
            await ch.start_block(1, cycle_block(0, 0.5))  # uploads LR000B1.000 and runs it
            await ch.safe_state()

            def client() -> tuple[bool, dict[str, Any], bool, dict[str, Any]]:
                c = pymacnet.ChannelInterface(_config(srv, channel=2))
                try:
                    started = c.start_test_with_procedure()
                    status = c.read_channel_status()
                    reset = c.reset_channel()
                    return started, status, reset, c.read_channel_status()
                finally:
                    _close(c)

            started, status, reset, after = await asyncio.to_thread(client)
            assert started and status["Stat"] == 2 and status["Chan"] == 2
            assert reset and after["Stat"] in (0, 7)
            assert srv.tester.channels[1].test is not None
            assert srv.tester.channels[1].test.name.startswith("RND")  # "Random" test name

    run_virtual_strict(main())

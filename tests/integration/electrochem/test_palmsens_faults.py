"""PalmSens driver against a misbehaving serial line: split, garbage, stall, bad replies."""

from __future__ import annotations

import numpy as np
import pytest

from labrig.drivers.capabilities import EisRequest, InstrumentProtocolError, InstrumentTimeout
from labrig.drivers.palmsens import PalmSensChannel
from labrig.simulators.faults import Garbage, Split, Stall
from labrig.simulators.palmsens import serve_palmsens
from tests.helpers import run_virtual_strict

FREQS = tuple(float(f) for f in np.geomspace(1e4, 1.0, 9))
# device output messages: 0 abort answer at open, 1 't', 2 'i', 3 'e', 4 'M000D', 5.. packages
REQ = EisRequest(FREQS, amplitude_V=0.01, bias="voltage", bias_V=3.0)


def test_output_split_into_single_bytes() -> None:
    async def main() -> None:
        split = Split(size=1, gap_s=0.001)
        async with (
            serve_palmsens(manipulators=[split]) as srv,
            PalmSensChannel.from_url(srv.url) as ch,
        ):
            res = await ch.measure_eis(REQ)
            assert len(res.frequency_Hz) == len(FREQS)
        assert split.applied > 10

    run_virtual_strict(main())


def test_garbage_in_a_package_is_reported_and_the_link_recovers() -> None:
    async def main() -> None:
        junk = Garbage(start=6, count=1, junk=b"\x00\xffnoise\x07\n")
        async with (
            serve_palmsens(manipulators=[junk]) as srv,
            PalmSensChannel.from_url(srv.url) as ch,
        ):
            with pytest.raises(InstrumentProtocolError) as info:
                await ch.measure_eis(REQ)
            assert b"meas_loop_eis" in bytes(info.value.command)  # type: ignore[arg-type]
            assert b"noise" in bytes(info.value.reply)  # type: ignore[arg-type]
            assert not srv.device.cell_on and srv.device.aborts == 1
            res = await ch.measure_eis(REQ)  # back in step
            assert len(res.frequency_Hz) == len(FREQS)
        assert junk.applied == 1

    run_virtual_strict(main())


def test_out_of_protocol_reply_names_command_and_reply() -> None:
    async def main() -> None:
        odd = Garbage(start=5, count=1, junk=b"Pcc80003E8m;cd8000001 ;dc0\n", replace=True)
        async with (
            serve_palmsens(manipulators=[odd]) as srv,
            PalmSensChannel.from_url(srv.url) as ch,
        ):
            with pytest.raises(InstrumentProtocolError) as info:
                await ch.measure_eis(REQ)
            text = str(info.value)
            assert "bad data package" in text and "sent b'e\\nvar f" in text
            assert "dc0" in text

    run_virtual_strict(main())


def test_stalled_instrument_times_out_and_the_cell_goes_off() -> None:
    async def main() -> None:
        stall = Stall(start=6)
        async with serve_palmsens(manipulators=[stall]) as srv:
            ch = PalmSensChannel.from_url(srv.url, timeout_s=2.0)
            await ch.open()
            slow = EisRequest(tuple(np.geomspace(0.2, 0.1, 10)), amplitude_V=0.01, bias="voltage",
                              bias_V=3.0)  # fmt: skip
            try:
                with pytest.raises(InstrumentTimeout):
                    await ch.measure_eis(slow)
                # the abort and cell_off went out although nothing comes back
                assert srv.device.aborts == 1 and not srv.device.cell_on
                with pytest.raises(InstrumentTimeout):
                    await ch.safe_state()
            finally:
                await ch.close()

    run_virtual_strict(main())

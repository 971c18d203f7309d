"""PalmSens driver against the simulated EmStat over a real pseudo-terminal."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from labrig.drivers.capabilities import EisRequest, ImpedanceChannel, InstrumentError
from labrig.drivers.palmsens import MethodScriptError, PalmSensChannel
from labrig.simulators.engine import ChannelEngine, SimStep
from labrig.simulators.palmsens import serve_palmsens
from tests.helpers import run_virtual_strict

FREQS = tuple(float(f) for f in np.geomspace(1e5, 0.05, 41))


def test_eis_spectrum_is_the_cells_impedance() -> None:
    async def main() -> None:
        now = asyncio.get_running_loop().time()
        engine = ChannelEngine(None, seed=1, now=now)
        twin = ChannelEngine(None, noise=0.0, now=now)  # the same cell, noise-free
        async with serve_palmsens(engine) as srv, PalmSensChannel.from_url(srv.url) as ch:
            assert isinstance(ch, ImpedanceChannel)
            assert ch.serial_number == srv.device.serial_number
            res = await ch.measure_eis(EisRequest(FREQS, amplitude_V=0.01))
            t = asyncio.get_running_loop().time()
            truth = twin.measure_impedance(np.array(FREQS), t)
            assert np.allclose(res.frequency_Hz, FREQS, rtol=1e-5)
            z = res.z_real_ohm + 1j * res.z_imag_ohm
            assert np.max(np.abs(z - truth) / np.abs(truth)) < 6e-3  # engine noise 1e-3
            assert res.z_imag_ohm[-1] < 0  # capacitive at low frequency
            assert res.dc_voltage_V == pytest.approx(twin.ocv(t), abs=2e-3)
            # ~3 periods per frequency, at least 0.1 s each, plus the OCV before
            expected = float(np.sum(np.maximum(3.0 / np.array(FREQS), 0.1)))
            assert expected - 1e-6 <= res.duration_s < expected + 1.0
            assert not srv.device.cell_on

    run_virtual_strict(main())


def test_ocp_and_cp_measure_the_shared_cell() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = ChannelEngine(None, noise=0.0, now=loop.time())
        async with serve_palmsens(engine) as srv, PalmSensChannel.from_url(srv.url) as ch:
            v0 = await ch.measure_ocv(2.0)
            assert v0 == pytest.approx(engine.ocv(loop.time()), abs=1e-5)
            cp = await ch.measure_cp(1e-3, duration_s=20.0, interval_s=1.0)
            assert len(cp.time_s) == 20
            assert np.allclose(cp.current_A, 1e-3)
            assert np.all(np.diff(cp.voltage_V) > 0)  # charging raises the voltage
            assert cp.voltage_V[0] > v0
            assert not srv.device.cell_on

    run_virtual_strict(main())


def test_cycler_and_potentiostat_share_one_cell() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = ChannelEngine(None, noise=0.0, now=loop.time())
        async with serve_palmsens(engine) as srv, PalmSensChannel.from_url(srv.url) as ch:
            v_empty = await ch.measure_ocv(1.0)
            step = SimStep(1, "cc", "charge", current_A=1.68e-3, max_duration_s=600.0)
            engine.start_block(1, [step], loop.time())  # the cycler drives the cell
            with pytest.raises(MethodScriptError, match="0x0032"):
                await ch.measure_eis(EisRequest((1000.0, 100.0), amplitude_V=0.01, bias="voltage",
                                                bias_V=3.0))  # fmt: skip
            assert not srv.device.cell_on  # run-time error: the driver switched it off
            end = engine.end_time()
            assert end is not None
            await asyncio.sleep(end - loop.time() + 60.0)
            assert await ch.measure_ocv(1.0) > v_empty + 0.05

    run_virtual_strict(main())


def test_cancelled_sweep_is_aborted_by_safe_state() -> None:
    async def main() -> None:
        async with serve_palmsens() as srv, PalmSensChannel.from_url(srv.url) as ch:
            task = asyncio.create_task(ch.measure_eis(EisRequest(FREQS, amplitude_V=0.01)))
            await asyncio.sleep(30.0)
            assert srv.device.running and srv.device.cell_on
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await ch.safe_state()
            assert srv.device.aborts == 1 and not srv.device.running
            assert not srv.device.cell_on
            assert 1.0 < await ch.measure_ocv(0.5) < 5.0  # the link is back in step

    run_virtual_strict(main())


def test_rejected_script_names_code_and_line() -> None:
    async def main() -> None:
        async with serve_palmsens() as srv, PalmSensChannel.from_url(srv.url) as ch:
            with pytest.raises(MethodScriptError) as info:
                await ch.run_script("e\nvar p\nset_e 1.5\n\n")
            assert info.value.code == 0x4001 and "Line 2, Col 7" in str(info.value)
            assert isinstance(info.value, InstrumentError)
            assert srv.device.scripts_run == 0

    run_virtual_strict(main())


def test_simulator_serves_on_tcp_too() -> None:
    async def main() -> None:
        async with serve_palmsens(pty=False) as srv, PalmSensChannel.from_url(srv.url) as ch:
            assert srv.url.startswith("tcp://")
            assert 1.0 < await ch.measure_ocv(0.5) < 5.0

    run_virtual_strict(main())

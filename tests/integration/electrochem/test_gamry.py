"""Gamry channels through labrig's driver on the simulated GamryCOM, on the virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from labrig.drivers.capabilities import (
    ChannelState,
    ChannelStep,
    CyclerChannel,
    EisRequest,
    EndCondition,
    ImpedanceChannel,
    InstrumentError,
    RecordRule,
)
from labrig.drivers.gamry import GamryChannel, GamryError, comtypes_backend, open_gamry
from labrig.simulators.engine import ChannelEngine
from labrig.simulators.gamry import SimComError, SimGamryCom, simulate_gamry
from tests.helpers import run_virtual_strict

from .biologic_support import LIMITS, cell_impedance, log_freqs
from .conftest import ONE_C_A, V_MAX, V_MIN

SECTION = "IFC1000-12345"


@contextlib.asynccontextmanager
async def gamry(**options: Any) -> AsyncIterator[tuple[GamryChannel, SimGamryCom, ChannelEngine]]:
    eng = ChannelEngine(None, seed=2, now=asyncio.get_running_loop().time())
    async with simulate_gamry(eng, section=SECTION) as com, open_gamry(
        backend=com, name="g", **options
    ) as ch:  # fmt: skip
        yield ch, com, eng


def test_eis_point_by_point_equals_the_cell() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with gamry() as (ch, com, eng):
            assert isinstance(ch, ImpedanceChannel) and isinstance(ch, CyclerChannel)
            assert ch.label == SECTION
            freqs = log_freqs(1e6, 0.1, 8)
            t0 = loop.time()
            res = await ch.measure_eis(EisRequest(freqs, amplitude_V=0.01))
            t0 += ch.ocv_before_eis_s  # the OCV is measured first, cell off
            z = res.z_real_ohm + 1j * res.z_imag_ohm
            ref = cell_impedance(eng, freqs, t0)
            assert np.median(np.abs(z - ref) / np.abs(ref)) < 2e-3
            assert res.frequency_Hz.tolist() == list(freqs)
            assert abs(res.dc_voltage_V - eng.ocv(t0)) < 2e-3
            assert com.created.count("GamryCOM.GamryReadZ") == 1
            assert com.devices[SECTION].events[-1] == "cell off"
            with pytest.raises(ValueError, match=r"\(0, 1e\+06\] Hz"):
                await ch.measure_eis(EisRequest((2e6,), amplitude_V=0.01))
            with pytest.raises(ValueError, match="galvanostatic"):
                await ch.measure_eis(EisRequest((1e3,), amplitude_A=1e-4))
        assert com.devices[SECTION].opened_by is None  # closed on exit

    run_virtual_strict(main())


def test_points_the_instrument_retries_are_measured_again() -> None:
    async def main() -> None:
        async with gamry(ocv_before_eis_s=5.0) as (ch, com, _):
            com.retry_points(SECTION, 3)
            res = await ch.measure_eis(EisRequest(log_freqs(1e4, 10.0, 3), amplitude_V=0.01))
            assert len(res.frequency_Hz) == 10 and com.devices[SECTION].retries == 0

    run_virtual_strict(main())


def test_a_lost_instrument_is_a_typed_error_and_the_cell_goes_off_when_back() -> None:
    async def main() -> None:
        async with gamry() as (ch, com, _):
            task = asyncio.create_task(ch.measure_eis(EisRequest(log_freqs(1e5, 0.01, 5),
                                                                 amplitude_V=0.01)))  # fmt: skip
            await asyncio.sleep(60.0)
            com.lose(SECTION)
            with pytest.raises(GamryError, match="not responding"):
                await task
            com.lose(SECTION, False)
            await ch.safe_state()
            assert com.devices[SECTION].events[-1] == "cell off"

    run_virtual_strict(main())


def test_a_host_run_block_of_rest_and_constant_current_steps() -> None:
    async def main() -> None:
        async with gamry() as (ch, com, _):
            await ch.set_limits(LIMITS)
            i = ONE_C_A * 0.5
            rec = RecordRule(every_s=10.0)
            steps = [
                ChannelStep(1, "cc", "charge", current_A=i,
                            ends=(EndCondition("voltage", ">=", V_MAX),), record=rec),
                ChannelStep(2, "rest", "rest", ends=(EndCondition("time", ">=", 600.0),),
                            record=RecordRule(every_s=60.0)),
                ChannelStep(3, "cc", "discharge", current_A=-i,
                            ends=(EndCondition("voltage", "<=", V_MIN),), record=rec),
            ]  # fmt: skip
            await ch.start_block(1, steps)
            with pytest.raises(InstrumentError, match="block 1 runs"):
                await ch.measure_eis(EisRequest((1e3,), amplitude_V=0.01))
            res = await ch.wait_block(poll_s=3600)
            assert res.state == ChannelState.done
            assert [e.reason for e in res.steps] == ["voltage", "time", "voltage"]
            # the host ends a step on the first point past its threshold
            assert V_MAX <= res.steps[0].end_voltage_V < V_MAX + 0.05
            assert res.steps[0].charge_Ah > 0 > res.steps[2].charge_Ah
            batch = await ch.read_records(0)
            assert batch.seq.tolist() == list(range(1, len(batch) + 1))
            assert np.all(np.diff(batch.time_s) >= 0) and set(batch.step_id.tolist()) == {1, 2, 3}
            hold = ChannelStep(9, "cv", "hold", voltage_V=3.0,
                               ends=(EndCondition("time", ">=", 1.0),))  # fmt: skip
            with pytest.raises(InstrumentError, match="rest and cc only"):
                await ch.start_block(2, [hold])
            assert com.devices[SECTION].events[-1] == "cell off"

    run_virtual_strict(main())


def test_com_objects_are_only_called_from_the_channels_thread() -> None:
    async def main() -> None:
        async with gamry() as (ch, com, _):
            with pytest.raises(SimComError, match="different thread"):
                com.create("GamryCOM.GamryReadZ")  # from the test's thread: refused
            assert await ch.measure_ocv(5.0) > 2.0  # the driver's calls all pass

    run_virtual_strict(main())


def test_comtypes_is_only_imported_to_open_a_real_instrument() -> None:
    code = "import sys, labrig.drivers.gamry; print('comtypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    if sys.platform != "win32":
        with pytest.raises(GamryError, match="Windows COM server"):
            comtypes_backend()

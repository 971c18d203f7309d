"""BioLogic channels through labrig's driver on the simulated EClib, on the virtual clock."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from labrig.drivers.biologic import (
    ChannelInUse,
    FirmwareMismatch,
    TechniqueRejected,
    open_biologic,
)
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
from labrig.simulators.biologic import AbiError, simulate_biologic
from labrig.simulators.biologic._abi import read_params
from labrig.simulators.engine import ChannelEngine
from tests.helpers import run_virtual_strict

from .biologic_support import LIMITS, cell_impedance, formation_block, log_freqs, rig
from .conftest import ONE_C_A, V_MAX, V_MIN


def _rel_err(z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(z - ref) / np.abs(ref)


@pytest.mark.parametrize(
    ("f_lo", "amp", "per_decade"), [(0.1, 0.010, 10), (0.01, 0.007, 8)], ids=["100mHz", "10mHz"]
)
def test_lab_eis_checkpoints_on_a_vmp300(f_lo: float, amp: float, per_decade: int) -> None:
    """7 MHz down to 100 mHz at 10 mV and to 10 mHz at 7 mV, at the OCV."""

    async def main() -> None:
        async with rig("VMP-300") as r:
            assert isinstance(r.ch, ImpedanceChannel) and isinstance(r.ch, CyclerChannel)
            freqs = log_freqs(7e6, f_lo, per_decade)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            res = await r.ch.measure_eis(EisRequest(freqs, amplitude_V=amp))
            z = res.z_real_ohm + 1j * res.z_imag_ohm
            ref = cell_impedance(r.engine, freqs, t0)
            err = _rel_err(z, ref)
            assert np.median(err) < 2e-3 and err.max() < 1e-2  # the cell's 0.1 % noise
            assert np.allclose(res.frequency_Hz, freqs, rtol=1e-6)
            assert np.all(np.diff(res.frequency_Hz) < 0)
            assert abs(res.dc_voltage_V - r.engine.ocv(t0)) < 2e-3
            # the slowest points take their periods: the sweep lasts longer than them
            assert res.duration_s > 1.0 / f_lo
            ch = r.sim.instrument.channels[0]
            assert [t.stem for t in ch.chain] == ["peis"] and ch.sp300
            assert not ch.running  # the sweep ended with the channel stopped
        assert not r.sim.instrument.channels[0].running

    run_virtual_strict(main())


def test_vmp3_uses_its_own_files_and_refuses_7_mhz() -> None:
    async def main() -> None:
        async with rig("VMP3") as r:
            assert r.ch.device.ecc_path("peis") == "peis.ecc"
            with pytest.raises(ValueError, match="1e\\+06 Hz"):
                await r.ch.measure_eis(EisRequest(log_freqs(7e6, 1.0, 5), amplitude_V=0.01))
            assert "BL_LoadTechnique" not in r.sim.library.calls
            freqs = log_freqs(1e6, 0.1, 6)
            res = await r.ch.measure_eis(EisRequest(freqs, amplitude_V=0.01))
            assert len(res.frequency_Hz) == len(freqs)
            assert not r.sim.instrument.channels[0].sp300
            v = await r.ch.measure_ocv(30.0)  # three-column OCV rows on this family
            assert 2.0 < v < 4.0

    run_virtual_strict(main())


def test_a_model_in_the_wrong_family_is_a_clear_error() -> None:
    async def main() -> None:
        with pytest.raises(FirmwareMismatch, match="station says VMP-300 but USB0 is a VMP3"):
            async with rig("VMP-300", sim_model="VMP3"):
                pass

    run_virtual_strict(main())


class Recorder:
    """Stands between the driver and the simulated library and writes the conversation
    down: each call with what it carried (technique files and parameters decoded)."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.log: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Callable[..., int]:
        fn = getattr(self.lib, name)

        def call(*args: Any) -> int:
            detail: Any = None
            if name == "BL_LoadTechnique":
                path = args[2].value.decode()
                detail = (path, {(p.label, p.index): p.number for p in read_params(args[3])},
                          bool(args[4].value), bool(args[5].value))  # fmt: skip
            self.log.append((name, detail))
            return int(fn(*args))

        return call

    def names(self) -> list[str]:
        out: list[str] = []
        for n, _ in self.log:
            if not out or out[-1] != n:
                out.append(n)
        return out

    def loads(self) -> list[Any]:
        return [d for n, d in self.log if n == "BL_LoadTechnique"]


def _open_recorded(engine: ChannelEngine, rec_box: list[Recorder], **kw: Any) -> Any:
    class _Ctx:
        async def __aenter__(self) -> Any:
            self.sim_cm = simulate_biologic([engine], model="VMP-300")
            sim = await self.sim_cm.__aenter__()
            rec = Recorder(sim.library)
            rec_box.append(rec)
            self.ch_cm = open_biologic(model="VMP-300", address=sim.address, library=rec,
                                       channel=0, poll_s=120.0, **kw)  # fmt: skip
            return await self.ch_cm.__aenter__()

        async def __aexit__(self, *exc: Any) -> None:
            try:
                await self.ch_cm.__aexit__(*exc)
            finally:
                await self.sim_cm.__aexit__(*exc)

    return _Ctx()


def test_conversation_of_a_cycling_block() -> None:
    """The calls, in order, and the techniques each step becomes."""

    async def main() -> None:
        box: list[Recorder] = []
        eng = ChannelEngine(None, seed=3, now=asyncio.get_running_loop().time())
        async with _open_recorded(eng, box) as ch:
            rec = box[0]
            await ch.set_limits(LIMITS)
            await ch.start_block(1, formation_block(10))
            res = await ch.wait_block(poll_s=3600)
            assert res.state == ChannelState.done
        i = ONE_C_A * 0.5
        loads = rec.loads()
        assert [(p, first, last) for p, _, first, last in loads] == [
            ("cplimit4.ecc", True, True), ("ocv4.ecc", True, True),
            ("cplimit4.ecc", True, False), ("calimit4.ecc", False, True),
        ]  # fmt: skip
        cc = loads[0][1]
        assert cc[("Current_step", 0)] == pytest.approx(i)
        assert cc[("Test1_Config", 0)] == 0b101 and cc[("Test1_Value", 0)] == pytest.approx(V_MAX)
        assert cc[("Test2_Config", 0)] == 0b001 and cc[("Test2_Value", 0)] == pytest.approx(2.0)
        assert cc[("Exit_Cond", 0)] == 2 and cc[("Step_number", 0)] == 0
        assert cc[("I_Range", 0)] == 7 and cc[("Record_every_dT", 0)] == 60.0
        assert loads[1][1][("Rest_time_T", 0)] == 600.0
        cv = loads[3][1]
        assert cv[("Voltage_step", 0)] == pytest.approx(V_MIN)
        # discharge taper: I > -C/20 ends it; I < -i_max trips it
        assert cv[("Test1_Config", 0)] == (3 << 5) | 0b101
        assert cv[("Test1_Value", 0)] == pytest.approx(-ONE_C_A / 20)
        assert cv[("Test2_Config", 0)] == (3 << 5) | 0b001
        step = ["BL_GetCurrentValues", "BL_LoadTechnique", "BL_StartChannel", "BL_GetData"]
        assert rec.names() == [
            "BL_Connect", "BL_GetChannelsPlugged", "BL_GetChannelInfos", *step * 3,
            "BL_StopChannel", "BL_GetCurrentValues",  # the block's end: safe state, checked
            "BL_StopChannel", "BL_GetCurrentValues",  # closing: safe state again
            "BL_Disconnect",
        ]  # fmt: skip

    run_virtual_strict(main())


def test_conversation_of_a_peis_sweep() -> None:
    async def main() -> None:
        box: list[Recorder] = []
        eng = ChannelEngine(None, seed=4, now=asyncio.get_running_loop().time())
        freqs = log_freqs(7e6, 0.1, 10)
        async with _open_recorded(eng, box, eis_poll_s=5.0) as ch:
            await ch.measure_eis(EisRequest(freqs, amplitude_V=0.01))
            await ch.measure_eis(EisRequest(freqs, amplitude_V=0.01, bias="voltage", bias_V=3.0))
        rec = box[0]
        (p1, a, *_), (_, b, *_) = rec.loads()
        assert p1 == "peis4.ecc"
        assert a[("Initial_frequency", 0)] == pytest.approx(7e6)
        assert a[("Final_frequency", 0)] == pytest.approx(0.1)
        assert a[("Frequency_number", 0)] == len(freqs)
        assert a[("Amplitude_Voltage", 0)] == pytest.approx(0.01)
        assert a[("sweep", 0)] is False and a[("vs_initial", 0)] is True
        assert a[("Initial_Voltage_step", 0)] == 0.0
        assert b[("vs_initial", 0)] is False and b[("Initial_Voltage_step", 0)] == 3.0
        sweep = ["BL_LoadTechnique", "BL_StartChannel", "BL_GetData"]
        assert rec.names() == [
            "BL_Connect", "BL_GetChannelsPlugged", "BL_GetChannelInfos", *sweep * 2,
            "BL_StopChannel", "BL_GetCurrentValues", "BL_Disconnect",
        ]  # fmt: skip
        assert len(rec.log) > 20  # the data was drained as the points came

    run_virtual_strict(main())

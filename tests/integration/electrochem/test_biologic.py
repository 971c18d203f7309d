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


def _contiguous(batch: Any) -> None:
    assert batch.seq.tolist() == list(range(1, len(batch) + 1))
    assert np.all(np.diff(batch.time_s) >= 0)


def test_cycling_and_eis_dry_run_on_a_simulated_vmp300() -> None:
    """A formation cycle, EIS at the OCV (7 MHz-100 mHz, 10 mV), another cycle, EIS down
    to 10 mHz at 7 mV: step ends, records and spectra against the simulated cell."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with rig("VMP-300", eis_poll_s=5.0) as r:
            ch = r.ch
            await ch.set_limits(LIMITS)
            assert (await ch.get_limits()) == LIMITS
            for block, (f_lo, amp) in enumerate(((0.1, 0.010), (0.01, 0.007)), start=1):
                await ch.start_block(block, formation_block(10 * block))
                await ch.start_block(block, formation_block(10 * block))  # no-op
                res = await ch.wait_block(poll_s=1800)
                assert res.state == ChannelState.done, res
                assert [e.reason for e in res.steps] == ["voltage", "time", "current"]
                assert res.steps[0].end_voltage_V == pytest.approx(V_MAX, abs=2e-3)
                assert res.steps[2].end_voltage_V == pytest.approx(V_MIN, abs=2e-3)
                charge, dis = res.steps[0].charge_Ah, res.steps[2].charge_Ah
                assert 0.5e-3 < charge < 3e-3 and -1.1 * charge < dis < -0.7 * charge
                freqs = log_freqs(7e6, f_lo, 8)
                t0 = loop.time()
                eis = await ch.measure_eis(EisRequest(freqs, amplitude_V=amp))
                ref = cell_impedance(r.engine, freqs, t0)
                err = _rel_err(eis.z_real_ohm + 1j * eis.z_imag_ohm, ref)
                assert np.median(err) < 2e-3 and err.max() < 1e-2
            batch = await ch.read_records(0)
            _contiguous(batch)
            assert set(batch.step_id.tolist()) == {10, 11, 12, 20, 21, 22}
            rest = batch.step_id == 11
            assert np.all(batch.current_A[rest] == 0.0)
            assert len(await ch.read_records(int(batch.seq[-1]))) == 0
            st = await ch.status()
            assert st.state == ChannelState.done and st.last_seq == batch.seq[-1]
            assert st.current_A == 0.0
        assert not r.sim.instrument.channels[0].running
        assert r.sim.library.calls[-3:] == [
            "BL_StopChannel",
            "BL_GetCurrentValues",
            "BL_Disconnect",
        ]

    run_virtual_strict(main())


def test_a_limit_trip_is_a_latched_fault_and_the_channel_stops() -> None:
    async def main() -> None:
        async with rig() as r:
            lim = LIMITS.__class__(2.0, 3.6, 0.01)
            await r.ch.set_limits(lim)
            step = ChannelStep(1, "cc", "charge", current_A=ONE_C_A,
                               ends=(EndCondition("time", ">=", 360000.0),),
                               record=RecordRule(every_s=300.0))  # fmt: skip
            await r.ch.start_block(1, [step])
            res = await r.ch.wait_block(poll_s=3600)
            assert res.state == ChannelState.fault and "limit" in (res.fault or "")
            assert res.steps[0].reason == "safety"
            assert res.steps[0].end_voltage_V == pytest.approx(3.6, abs=2e-3)
            assert not r.sim.instrument.channels[0].running

    run_virtual_strict(main())


def test_a_block_the_channel_cannot_run_is_refused_before_anything_moves() -> None:
    async def main() -> None:
        async with rig() as r:
            await r.ch.set_limits(LIMITS)
            bad = ChannelStep(1, "cc", "charge", current_A=ONE_C_A,
                              ends=(EndCondition("dvdt", "<=", 1e-6),))  # fmt: skip
            with pytest.raises(InstrumentError, match="dvdt"):
                await r.ch.start_block(1, [bad])
            rest = ChannelStep(2, "rest", "rest", ends=(EndCondition("voltage", ">=", 3.0),))
            with pytest.raises(InstrumentError, match="rest"):
                await r.ch.start_block(2, [rest])
            assert "BL_LoadTechnique" not in r.sim.library.calls

    run_virtual_strict(main())


def test_a_channel_ec_lab_runs_is_never_touched() -> None:
    async def main() -> None:
        eng = ChannelEngine(None, now=asyncio.get_running_loop().time())
        async with simulate_biologic([eng]) as sim:
            sim.library.hold_channel(sim.address, 0)
            with pytest.raises(ChannelInUse, match="EC-Lab or another program"):
                async with open_biologic(model="VMP-300", address=sim.address,
                                         library=sim.library):  # fmt: skip
                    pass
            assert not {"BL_LoadFirmware", "BL_LoadTechnique", "BL_StartChannel",
                        "BL_StopChannel"} & set(sim.library.calls)  # fmt: skip

    run_virtual_strict(main())


def test_firmware_is_loaded_on_a_stopped_channel_only_when_allowed() -> None:
    async def main() -> None:
        async with rig(firmware=1) as r:  # EC-Lab's firmware left on a stopped channel
            assert "BL_LoadFirmware" in r.sim.library.calls
            assert await r.ch.measure_ocv(10.0) > 2.0
        with pytest.raises(FirmwareMismatch, match="load_firmware"):
            async with rig(firmware=1, load_firmware=False):
                pass

    run_virtual_strict(main())


def test_a_technique_that_does_not_load_is_a_clear_error() -> None:
    async def main() -> None:
        async with rig() as r:
            r.sim.library.fail_technique("peis")
            with pytest.raises(TechniqueRejected, match="-403"):
                await r.ch.measure_eis(EisRequest(log_freqs(1e5, 1.0, 5), amplitude_V=0.01))
            assert not r.sim.instrument.channels[0].running
            r.sim.library.fail_technique("peis", False)
            res = await r.ch.measure_eis(EisRequest(log_freqs(1e5, 1.0, 5), amplitude_V=0.01))
            assert len(res.frequency_Hz) == 26

    run_virtual_strict(main())


def test_the_simulated_library_holds_callers_to_the_calling_convention() -> None:
    async def main() -> None:
        async with simulate_biologic(1) as sim:
            lib = sim.library
            with pytest.raises(AbiError, match="expected c_int"):
                lib.BL_TestConnection(1)
            small = (ctypes.c_int32 * 3)()
            with pytest.raises(AbiError, match="holds 12 bytes, the record is 44"):
                lib.BL_Connect(ctypes.c_char_p(b"USB0"), ctypes.c_uint8(5),
                               ctypes.byref(ctypes.c_int32()), ctypes.byref(small))  # fmt: skip
            assert lib.BL_Connect(ctypes.c_char_p(b"USB9"), ctypes.c_uint8(5),
                                  ctypes.byref(ctypes.c_int32()),
                                  ctypes.byref((ctypes.c_int32 * 11)())) == -201  # fmt: skip

    run_virtual_strict(main())


def test_binding_calls_version_messages_and_parameter_updates() -> None:
    """The binding's less travelled calls, against the simulated library."""

    async def main() -> None:
        from labrig.drivers.biologic._params import Ocv

        async with rig() as r:
            lib, dev = r.ch.device.eclib, r.ch.device
            assert "simulator" in await lib.lib_version()
            assert await lib.message(dev.id, 0) == ""
            await lib.test_connection(dev.id)
            info = await lib.channel_infos(dev.id, 0)
            assert (info.Channel, info.FirmwareCode, info.State) == (0, 5, 0)
            path = dev.ecc_path("ocv")
            await lib.load_technique(dev.id, 0, path, Ocv(60.0).params(), first=True, last=True)
            await lib.update_parameters(dev.id, 0, 0, path, Ocv(120.0).params())
            assert r.sim.instrument.channels[0].chain[0].steps[0].duration_s == 120.0
            with pytest.raises(TechniqueRejected, match="invalid function update parameters"):
                await lib.update_parameters(dev.id, 0, 0, dev.ecc_path("cp"), Ocv(1.0).params())
            with pytest.raises(TechniqueRejected, match="invalid function parameters"):
                await lib.load_technique(dev.id, 0, path, [], first=True, last=True)
            assert "parameter Rest_time_T[0] missing" in await lib.message(dev.id, 0)

    run_virtual_strict(main())


def test_galvanostatic_eis_at_zero_current() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with rig("SP-300") as r:
            freqs = log_freqs(7e6, 1.0, 6)
            t0 = loop.time()
            res = await r.ch.measure_eis(EisRequest(freqs, amplitude_A=5e-6))
            ref = cell_impedance(r.engine, freqs, t0)
            err = _rel_err(res.z_real_ohm + 1j * res.z_imag_ohm, ref)
            assert np.median(err) < 2e-3 and err.max() < 1e-2
            assert [t.stem for t in r.sim.instrument.channels[0].chain] == ["geis"]

    run_virtual_strict(main())

"""EClib records and technique parameters, byte for byte (little-endian, 32-bit aligned).

The expected bytes are built here with ``struct`` from the documented field order, so a
field out of place, a wrong width or a missing ``_pack_`` fails."""

from __future__ import annotations

import ctypes
import struct

import pytest

from labrig.drivers.biologic._params import (
    Ca,
    CaLimit,
    Cp,
    CpLimit,
    ExitCond,
    Geis,
    IRange,
    LimitStep,
    LimitTest,
    Loop,
    Ocv,
    Peis,
    ecc_file,
    encode_params,
    encode_test,
    float_bits,
    sweep,
)
from labrig.drivers.biologic._structs import (
    ChannelInfos,
    CurrentValues,
    DataInfos,
    DeviceInfos,
    EccParam,
    EccParams,
    Family,
    family_of,
)


def test_record_sizes_and_offsets_follow_the_headers() -> None:
    assert ctypes.sizeof(DeviceInfos) == 44
    assert ctypes.sizeof(ChannelInfos) == 76
    assert ctypes.sizeof(CurrentValues) == 76
    assert ctypes.sizeof(DataInfos) == 40  # float64 StartTime at 28: no padding
    assert DataInfos.StartTime.offset == 28 and DataInfos.MuxPad.offset == 36
    assert ctypes.sizeof(EccParam) == 76
    assert ctypes.sizeof(EccParams) == 4 + ctypes.sizeof(ctypes.c_void_p)
    assert EccParams.pParams.offset == 4
    assert CurrentValues.I.offset == 40 and CurrentValues.ElapsedTime.offset == 52


def test_current_values_bytes() -> None:
    cv = CurrentValues(State=1, MemFilled=80, TimeBase=24e-6, Ewe=3.5, I=-1e-3, IRange=8,
                       ElapsedTime=12.5, OptPos=3)  # fmt: skip
    want = struct.pack("<ii7fifii3f3i", 1, 80, 24e-6, 3.5, 0, 0, 0, 0, 0, 0, -1e-3, 8, 0,
                       12.5, 0, 0, 0, 0, 3)  # fmt: skip
    assert bytes(cv) == want


def test_data_infos_bytes() -> None:
    di = DataInfos(NbRows=3, NbCols=5, TechniqueIndex=1, TechniqueID=155, ProcessIndex=0,
                   loop=2, StartTime=1234.5, MuxPad=7)  # fmt: skip
    assert bytes(di) == struct.pack("<7idi", 0, 3, 5, 1, 155, 0, 2, 1234.5, 7)


def test_device_and_channel_infos_bytes() -> None:
    d = DeviceInfos(DeviceCode=12, NumberOfChannels=16, FirmwareDate_yyyy=2024)
    assert bytes(d) == struct.pack("<11i", 12, 0, 0, 16, 0, 0, 2024, 0, 0, 0, 0)
    c = ChannelInfos(Channel=3, FirmwareCode=5, State=1, NbOfTechniques=2)
    assert bytes(c) == struct.pack("<19i", 3, 0, 0, 5, *[0] * 10, 1, 0, 0, 0, 2)


def _param(label: str, kind: int, bits: int, index: int = 0) -> bytes:
    return struct.pack("<64siIi", label.encode(), kind, bits, index)


def _f(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0])


def test_parameter_array_bytes_and_the_list_record() -> None:
    arr, rec = encode_params(Ocv(60.0, record_every_dt_s=0.5).params())
    raw = ctypes.string_at(ctypes.addressof(arr), ctypes.sizeof(arr))
    want = (_param("Rest_time_T", 2, _f(60.0)) + _param("Record_every_dE", 2, 0)
            + _param("Record_every_dT", 2, _f(0.5)) + _param("E_Range", 0, 2)
            + _param("Bandwidth", 0, 5))  # fmt: skip
    assert raw == want
    n, ptr = struct.unpack_from("<iQ", bytes(rec)) if ctypes.sizeof(rec) == 12 else (0, 0)
    assert n == 5 and ptr == ctypes.addressof(arr)


def test_negative_ints_and_booleans_travel_as_32_bits() -> None:
    arr, _ = encode_params(Loop(repeat=3, goto_technique=0).params())
    assert bytes(arr[0]) == _param("loop_N_times", 0, 3)
    p = Peis(sweep(1e5, 1.0, 6), 0.01, voltage_V=-0.25, vs_initial=False).params()
    by = {x.label: x for x in p}
    arr, _ = encode_params([by["vs_initial"], by["Initial_Voltage_step"], by["sweep"]])
    assert bytes(arr[0]) == _param("vs_initial", 1, 0)
    assert bytes(arr[1]) == _param("Initial_Voltage_step", 2, _f(-0.25))
    assert bytes(arr[2]) == _param("sweep", 1, 0)  # False: logarithmic
    assert float_bits(-0.25) == 0xBE800000


def test_limit_test_bit_field() -> None:
    assert encode_test(None) == 0
    assert encode_test(LimitTest("E", False, 3.0)) == 0b001  # active, OR, <, Ewe
    assert encode_test(LimitTest("E", True, 4.2)) == 0b101
    assert encode_test(LimitTest("I", True, 1e-3, "AND")) == (3 << 5) | 0b111
    assert encode_test(LimitTest("I", False, 1e-3, active=False)) == 3 << 5
    with pytest.raises(ValueError, match="AUX3"):
        encode_test(LimitTest("AUX3", True, 1.0))  # type: ignore[arg-type]


def test_cplimit_parameters_per_step() -> None:
    tech = CpLimit(
        (LimitStep(1e-3, 3600.0, (LimitTest("E", True, 4.2), LimitTest("E", False, 2.5)),
                   ExitCond.STOP),
         LimitStep(-1e-3, 60.0)),
        record_every_dt_s=10.0, i_range=IRange.I_10mA,
    )  # fmt: skip
    p = {(x.label, x.index): x for x in tech.params()}
    assert p[("Current_step", 1)].value == -1e-3
    assert p[("Duration_step", 0)].value == 3600.0
    assert p[("Step_number", 0)].value == 1
    assert p[("Test1_Config", 0)].value == 0b101 and p[("Test1_Value", 0)].value == 4.2
    assert p[("Test2_Config", 0)].value == 0b001 and p[("Test3_Config", 0)].value == 0
    assert p[("Test1_Config", 1)].value == 0 and p[("Exit_Cond", 0)].value == 2
    assert p[("I_Range", 0)].value == IRange.I_10mA
    with pytest.raises(ValueError, match="fixed I range"):
        CpLimit((LimitStep(1e-3, 1.0),), i_range=IRange.AUTO).params()
    with pytest.raises(ValueError, match="three"):
        CpLimit((LimitStep(1e-3, 1.0, (LimitTest("E", True, 1.0),) * 4),)).params()


def test_every_technique_has_its_labels_and_file() -> None:
    sw = sweep(7e6, 0.1, 50)
    techs = [Ocv(10.0), Cp((1e-3,), (10.0,)), Ca((3.0,), (10.0,)),
             CpLimit((LimitStep(1e-3, 1.0),)), CaLimit((LimitStep(3.0, 1.0),)),
             Peis(sw, 0.01), Geis(sw, 1e-4), Loop(2)]  # fmt: skip
    labels = {t.stem: {x.label for x in t.params()} for t in techs}
    assert {"Initial_frequency", "Final_frequency", "Frequency_number", "Amplitude_Voltage",
            "Average_N_times", "vs_initial", "Initial_Voltage_step"} <= labels["peis"]  # fmt: skip
    assert "Amplitude_Current" in labels["geis"] and "Voltage_step" in labels["calimit"]
    assert {t.stem: int(t.technique_id) for t in techs} == {
        "ocv": 100, "cp": 102, "ca": 101, "cplimit": 155, "calimit": 157, "peis": 104,
        "geis": 107, "loop": 150,
    }  # fmt: skip
    assert ecc_file("peis", Family.SP300) == "peis4.ecc"
    assert ecc_file("peis", Family.VMP3) == "peis.ecc"


def test_families_and_current_ranges() -> None:
    assert family_of(12) == Family.SP300 and family_of(16) == Family.SP300  # VMP-300, SP-300
    assert family_of(5) == Family.VMP3 and family_of(999) is None
    assert IRange.for_current(8.4e-4) == IRange.I_1mA
    assert IRange.for_current(-5e-3) == IRange.I_10mA
    with pytest.raises(ValueError, match="1 A"):
        IRange.for_current(2.0)

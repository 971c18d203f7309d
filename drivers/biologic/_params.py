"""Typed technique parameters and their exact EClib encoding.

A technique is a frozen dataclass with real units; ``params()`` lists its labelled
values as the technique file expects them (labels are case-sensitive), and
:func:`encode_params` turns them into the ``TEccParam`` array and ``TEccParams`` record
BL_LoadTechnique takes. Every value travels as 32 bits: an int32, a boolean (0/1) or the
bit pattern of a float32. Pure: no I/O.

Limit tests of CPLIMIT/CALIMIT (``TestN_Config``) are a bit field: bit 0 active, bit 1
logic (1 AND, 0 OR), bit 2 comparison (1 ``>``, 0 ``<``), bits 5 and up the variable
(0 Ewe, 1 AUX1, 2 AUX2, 3 I). ``Exit_Cond``: 0 next step, 1 next technique, 2 stop the
experiment. Both from the package's manual as read by public clients (check on the unit).
"""

from __future__ import annotations

import ctypes
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from ._structs import EccParam, EccParams, Family, ParamType, TechniqueId

__all__ = [
    "Bandwidth",
    "Ca",
    "CaLimit",
    "Cp",
    "CpLimit",
    "ERange",
    "ExitCond",
    "Geis",
    "IRange",
    "LimitStep",
    "LimitTest",
    "Loop",
    "Ocv",
    "Param",
    "Peis",
    "Technique",
    "ecc_file",
    "encode_params",
    "encode_test",
    "float_bits",
    "sweep",
]

MAX_STEPS = 20  # array parameters hold at most 20 steps


class IRange(IntEnum):
    I_100pA = 0
    I_1nA = 1
    I_10nA = 2
    I_100nA = 3
    I_1uA = 4
    I_10uA = 5
    I_100uA = 6
    I_1mA = 7
    I_10mA = 8
    I_100mA = 9
    I_1A = 10
    BOOSTER = 11
    AUTO = 12

    @classmethod
    def for_current(cls, amps: float) -> IRange:
        """The smallest fixed range that holds ``|amps|`` (galvanostatic techniques
        refuse auto-ranging)."""
        a = abs(amps)
        for r, full in zip(_FIXED, _FULL_SCALE_A, strict=True):
            if a <= full:
                return r
        raise ValueError(f"|{amps}| A is above the 1 A range")


_FIXED = tuple(IRange(i) for i in range(11))
_FULL_SCALE_A = tuple(1e-10 * 10**i for i in range(11))


class ERange(IntEnum):
    E_2_5V = 0
    E_5V = 1
    E_10V = 2
    AUTO = 3


class Bandwidth(IntEnum):
    BW1 = 1
    BW2 = 2
    BW3 = 3
    BW4 = 4
    BW5 = 5
    BW6 = 6
    BW7 = 7
    BW8 = 8
    BW9 = 9


class ExitCond(IntEnum):
    NEXT_STEP = 0
    NEXT_TECHNIQUE = 1
    STOP = 2


_VARIABLE = {"E": 0, "AUX1": 1, "AUX2": 2, "I": 3}


@dataclass(frozen=True, slots=True)
class Param:
    label: str
    kind: ParamType
    value: float | int | bool
    index: int = 0


def float_bits(value: float) -> int:
    """The uint32 bit pattern of ``value`` as a float32."""
    return int(struct.unpack("<I", struct.pack("<f", value))[0])


def _bits(p: Param) -> int:
    if p.kind == ParamType.SINGLE:
        return float_bits(float(p.value))
    if p.kind == ParamType.BOOLEAN:
        return 1 if p.value else 0
    return int(p.value) & 0xFFFFFFFF


def encode_params(params: Sequence[Param]) -> tuple[ctypes.Array[EccParam], EccParams]:
    """The ``TEccParam`` array and the ``TEccParams`` record pointing at it (keep the
    array alive while the record is in use)."""
    arr = (EccParam * max(1, len(params)))()
    for k, p in enumerate(params):
        label = p.label.encode("ascii")
        if len(label) >= 64:
            raise ValueError(f"parameter label {p.label!r} is longer than 63 characters")
        arr[k].ParamStr = label
        arr[k].ParamType = int(p.kind)
        arr[k].ParamVal = _bits(p)
        arr[k].ParamIndex = p.index
    rec = EccParams(len(params), ctypes.cast(arr, ctypes.POINTER(EccParam)))
    return arr, rec


def _finite(name: str, v: float, *, low: float | None = None, high: float | None = None) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return float(v)


def _single(label: str, v: float, index: int = 0) -> Param:
    return Param(label, ParamType.SINGLE, _finite(label, v), index)


def _int(label: str, v: int, index: int = 0) -> Param:
    return Param(label, ParamType.INT32, int(v), index)


def _bool(label: str, v: bool, index: int = 0) -> Param:
    return Param(label, ParamType.BOOLEAN, bool(v), index)


@dataclass(frozen=True, slots=True)
class LimitTest:
    """``variable op value`` ends a CPLIMIT/CALIMIT step (``above``: ``>``, else ``<``)."""

    variable: Literal["E", "I", "AUX1", "AUX2"]
    above: bool
    value: float
    logic: Literal["OR", "AND"] = "OR"
    active: bool = True


def encode_test(test: LimitTest | None) -> int:
    """The ``TestN_Config`` bit field (0 for no test)."""
    if test is None:
        return 0
    if test.variable not in _VARIABLE:
        raise ValueError(f"limit variable must be one of {sorted(_VARIABLE)}, got {test.variable}")
    if test.logic not in ("OR", "AND"):
        raise ValueError(f"limit logic must be OR or AND, got {test.logic!r}")
    return (
        (_VARIABLE[test.variable] << 5)
        | (int(test.above) << 2)
        | (int(test.logic == "AND") << 1)
        | int(test.active)
    )


class Technique:
    """What every technique offers: its id, file stem and labelled parameters."""

    technique_id: TechniqueId
    stem: str

    def params(self) -> list[Param]:
        raise NotImplementedError


def ecc_file(stem: str, family: Family) -> str:
    """``peis.ecc`` for the VMP3 family, ``peis4.ecc`` for the SP-300 family."""
    return f"{stem}4.ecc" if family == Family.SP300 else f"{stem}.ecc"


def _common(i_range: IRange, e_range: ERange, bandwidth: Bandwidth) -> list[Param]:
    return [
        _int("I_Range", int(i_range)),
        _int("E_Range", int(e_range)),
        _int("Bandwidth", int(bandwidth)),
    ]


@dataclass(frozen=True, slots=True)
class Ocv(Technique):
    rest_time_s: float
    record_every_dt_s: float = 1.0
    record_every_dE_V: float = 0.0
    e_range: ERange = ERange.E_10V
    bandwidth: Bandwidth = Bandwidth.BW5
    technique_id = TechniqueId.OCV
    stem = "ocv"

    def params(self) -> list[Param]:
        return [
            _single("Rest_time_T", _finite("rest time", self.rest_time_s, low=0.0)),
            _single("Record_every_dE", _finite("dE", self.record_every_dE_V, low=0.0)),
            _single("Record_every_dT", _finite("dT", self.record_every_dt_s, low=0.0)),
            _int("E_Range", int(self.e_range)),
            _int("Bandwidth", int(self.bandwidth)),
        ]


@dataclass(frozen=True, slots=True)
class _Steps:
    setpoints: tuple[float, ...]
    durations_s: tuple[float, ...]
    vs_initial: tuple[bool, ...]

    def check(self) -> None:
        n = len(self.setpoints)
        if not 1 <= n <= MAX_STEPS:
            raise ValueError(f"a technique holds 1..{MAX_STEPS} steps, got {n}")
        if len(self.durations_s) != n or len(self.vs_initial) != n:
            raise ValueError("setpoints, durations and vs_initial need one entry per step")


def _step_params(label: str, s: _Steps) -> list[Param]:
    s.check()
    out: list[Param] = []
    for k, (v, d, rel) in enumerate(zip(s.setpoints, s.durations_s, s.vs_initial, strict=True)):
        out.append(_single(label, v, k))
        out.append(_bool("vs_initial", rel, k))
        out.append(_single("Duration_step", _finite("duration", d, low=0.0), k))
    out.append(_int("Step_number", len(s.setpoints) - 1))
    return out


@dataclass(frozen=True, slots=True)
class Cp(Technique):
    """Chronopotentiometry: current steps (A) of given durations."""

    currents_A: tuple[float, ...]
    durations_s: tuple[float, ...]
    record_every_dt_s: float = 1.0
    record_every_dE_V: float = 0.0
    n_cycles: int = 0
    i_range: IRange = IRange.I_10mA
    e_range: ERange = ERange.E_10V
    bandwidth: Bandwidth = Bandwidth.BW5
    technique_id = TechniqueId.CP
    stem = "cp"

    def params(self) -> list[Param]:
        rel = (False,) * len(self.currents_A)
        p = _step_params("Current_step", _Steps(self.currents_A, self.durations_s, rel))
        return [
            *p,
            _single("Record_every_dT", self.record_every_dt_s),
            _single("Record_every_dE", self.record_every_dE_V),
            _int("N_Cycles", self.n_cycles),
            *_common(_galvano_range(self.i_range, "CP"), self.e_range, self.bandwidth),
        ]


@dataclass(frozen=True, slots=True)
class Ca(Technique):
    """Chronoamperometry: voltage steps (V) of given durations."""

    voltages_V: tuple[float, ...]
    durations_s: tuple[float, ...]
    record_every_dt_s: float = 1.0
    record_every_dI_A: float = 0.0
    n_cycles: int = 0
    i_range: IRange = IRange.I_10mA
    e_range: ERange = ERange.E_10V
    bandwidth: Bandwidth = Bandwidth.BW5
    technique_id = TechniqueId.CA
    stem = "ca"

    def params(self) -> list[Param]:
        rel = (False,) * len(self.voltages_V)
        p = _step_params("Voltage_step", _Steps(self.voltages_V, self.durations_s, rel))
        return [
            *p,
            _single("Record_every_dT", self.record_every_dt_s),
            _single("Record_every_dI", self.record_every_dI_A),
            _int("N_Cycles", self.n_cycles),
            *_common(self.i_range, self.e_range, self.bandwidth),
        ]


def _galvano_range(r: IRange, what: str) -> IRange:
    if r == IRange.AUTO:
        raise ValueError(f"{what} drives the current: give a fixed I range, not AUTO")
    return r


@dataclass(frozen=True, slots=True)
class LimitStep:
    """One step of CPLIMIT (setpoint in A) or CALIMIT (in V), with up to three tests."""

    setpoint: float
    duration_s: float
    tests: tuple[LimitTest, ...] = ()
    exit: ExitCond = ExitCond.NEXT_STEP
    vs_initial: bool = False


def _limit_params(label: str, steps: Sequence[LimitStep]) -> list[Param]:
    s = _Steps(
        tuple(x.setpoint for x in steps),
        tuple(x.duration_s for x in steps),
        tuple(x.vs_initial for x in steps),
    )
    out = _step_params(label, s)
    for k, st in enumerate(steps):
        if len(st.tests) > 3:
            raise ValueError(f"step {k}: at most three limit tests, got {len(st.tests)}")
        tests: list[LimitTest | None] = [*st.tests, None, None, None][:3]
        for n, t in enumerate(tests, start=1):
            out.append(_int(f"Test{n}_Config", encode_test(t), k))
            out.append(_single(f"Test{n}_Value", 0.0 if t is None else t.value, k))
        out.append(_int("Exit_Cond", int(st.exit), k))
    return out


@dataclass(frozen=True, slots=True)
class CpLimit(Technique):
    steps: tuple[LimitStep, ...]
    record_every_dt_s: float = 1.0
    record_every_dE_V: float = 0.0
    n_cycles: int = 0
    i_range: IRange = IRange.I_10mA
    e_range: ERange = ERange.E_10V
    bandwidth: Bandwidth = Bandwidth.BW5
    technique_id = TechniqueId.CPLIMIT
    stem = "cplimit"

    def params(self) -> list[Param]:
        return [
            *_limit_params("Current_step", self.steps),
            _single("Record_every_dT", self.record_every_dt_s),
            _single("Record_every_dE", self.record_every_dE_V),
            _int("N_Cycles", self.n_cycles),
            *_common(_galvano_range(self.i_range, "CPLIMIT"), self.e_range, self.bandwidth),
        ]


@dataclass(frozen=True, slots=True)
class CaLimit(Technique):
    steps: tuple[LimitStep, ...]
    record_every_dt_s: float = 1.0
    record_every_dI_A: float = 0.0
    n_cycles: int = 0
    i_range: IRange = IRange.AUTO
    e_range: ERange = ERange.E_10V
    bandwidth: Bandwidth = Bandwidth.BW5
    technique_id = TechniqueId.CALIMIT
    stem = "calimit"

    def params(self) -> list[Param]:
        return [
            *_limit_params("Voltage_step", self.steps),
            _single("Record_every_dT", self.record_every_dt_s),
            _single("Record_every_dI", self.record_every_dI_A),
            _int("N_Cycles", self.n_cycles),
            *_common(self.i_range, self.e_range, self.bandwidth),
        ]


@dataclass(frozen=True, slots=True)
class _Sweep:
    initial_frequency_Hz: float
    final_frequency_Hz: float
    n_frequencies: int
    log_sweep: bool = True
    average_n: int = 1
    wait_for_steady: float = 0.1  # periods before each point
    correction: bool = False

    def params(self) -> list[Param]:
        for name, f in (("initial", self.initial_frequency_Hz), ("final", self.final_frequency_Hz)):
            _finite(f"{name} frequency", f, low=1e-6)
        if self.n_frequencies < 1 or self.average_n < 1:
            raise ValueError("frequency number and Average_N_times must be >= 1")
        return [
            _single("Initial_frequency", self.initial_frequency_Hz),
            _single("Final_frequency", self.final_frequency_Hz),
            _bool("sweep", not self.log_sweep),  # True: linear, False: logarithmic
            _int("Frequency_number", self.n_frequencies),
            _int("Average_N_times", self.average_n),
            _bool("Correction", self.correction),
            _single("Wait_for_steady", _finite("wait", self.wait_for_steady, low=0.0)),
        ]


@dataclass(frozen=True, slots=True)
class Peis(Technique):
    """Potentiostatic EIS at ``voltage_V`` (vs. the OCV when ``vs_initial``)."""

    sweep: _Sweep
    amplitude_V: float
    voltage_V: float = 0.0
    vs_initial: bool = True
    duration_step_s: float = 0.0
    record_every_dt_s: float = 0.0
    record_every_dI_A: float = 0.0
    i_range: IRange = IRange.AUTO
    e_range: ERange = ERange.E_10V
    bandwidth: Bandwidth = Bandwidth.BW8
    technique_id = TechniqueId.PEIS
    stem = "peis"

    def params(self) -> list[Param]:
        _finite("amplitude", self.amplitude_V, low=1e-6, high=2.5)
        return [
            _bool("vs_initial", self.vs_initial),
            _bool("vs_final", self.vs_initial),
            _single("Initial_Voltage_step", self.voltage_V),
            _single("Final_Voltage_step", self.voltage_V),
            _single("Duration_step", _finite("duration", self.duration_step_s, low=0.0)),
            _int("Step_number", 0),
            _single("Record_every_dT", self.record_every_dt_s),
            _single("Record_every_dI", self.record_every_dI_A),
            *self.sweep.params(),
            _single("Amplitude_Voltage", self.amplitude_V),
            *_common(self.i_range, self.e_range, self.bandwidth),
        ]


@dataclass(frozen=True, slots=True)
class Geis(Technique):
    """Galvanostatic EIS at ``current_A`` (vs. the initial current when ``vs_initial``)."""

    sweep: _Sweep
    amplitude_A: float
    current_A: float = 0.0
    vs_initial: bool = False
    duration_step_s: float = 0.0
    record_every_dt_s: float = 0.0
    record_every_dE_V: float = 0.0
    i_range: IRange = IRange.I_10mA
    e_range: ERange = ERange.E_10V
    bandwidth: Bandwidth = Bandwidth.BW8
    technique_id = TechniqueId.GEIS
    stem = "geis"

    def params(self) -> list[Param]:
        _finite("amplitude", self.amplitude_A, low=1e-12, high=1.0)
        return [
            _bool("vs_initial", self.vs_initial),
            _bool("vs_final", self.vs_initial),
            _single("Initial_Current_step", self.current_A),
            _single("Final_Current_step", self.current_A),
            _single("Duration_step", _finite("duration", self.duration_step_s, low=0.0)),
            _int("Step_number", 0),
            _single("Record_every_dT", self.record_every_dt_s),
            _single("Record_every_dE", self.record_every_dE_V),
            *self.sweep.params(),
            _single("Amplitude_Current", self.amplitude_A),
            *_common(_galvano_range(self.i_range, "GEIS"), self.e_range, self.bandwidth),
        ]


@dataclass(frozen=True, slots=True)
class Loop(Technique):
    """Go back to technique ``goto_technique`` (0-based) ``repeat`` more times."""

    repeat: int
    goto_technique: int = 0
    technique_id = TechniqueId.LOOP
    stem = "loop"

    def params(self) -> list[Param]:
        if self.repeat < 0 or self.goto_technique < 0:
            raise ValueError("loop counts and technique indices are >= 0")
        return [_int("loop_N_times", self.repeat), _int("protocol_number", self.goto_technique)]


def sweep(
    initial_Hz: float, final_Hz: float, n: int, *, log: bool = True, average_n: int = 1,
    wait_for_steady: float = 0.1,
) -> _Sweep:  # fmt: skip
    """A frequency sweep for :class:`Peis` / :class:`Geis`."""
    return _Sweep(initial_Hz, final_Hz, n, log, average_n, wait_for_steady)

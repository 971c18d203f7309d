"""Technique files and their parameters, as the simulated firmware reads them.

A technique is named by its ``.ecc`` file: ``peis.ecc`` belongs to the VMP3 family,
``peis4.ecc`` to the SP-300 family. Parameters are read by label (case-sensitive) and
index; a missing or mistyped parameter is refused. DC techniques become steps of the
channel engine, repeated ``N_Cycles`` more times; EIS techniques a sweep; LOOP
(``loop_N_times``, ``protocol_number``) sends the chain back to an earlier technique
(0-based index) that many more times. Limit tests (``TestN_Config``) are a bit field:
bit 0 active, bit 1 AND, bit 2 ``>``, variable from bit 5 (0 Ewe, 3 I); ``Exit_Cond``
0 next step, 1 next technique, 2 stop.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ._abi import Param

__all__ = [
    "IDS",
    "DcStep",
    "EisSweep",
    "Loop",
    "SimTechnique",
    "TechniqueError",
    "Test",
    "parse_technique",
    "technique_stem",
]

#: technique ids (as the data infos report them)
IDS = {"ocv": 100, "ca": 101, "cp": 102, "peis": 104, "geis": 107, "loop": 150,
       "cplimit": 155, "calimit": 157}  # fmt: skip


class TechniqueError(ValueError):
    """A technique the simulated firmware refuses: ``code`` is the EClib error."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def technique_stem(path: str, family4: bool) -> str:
    """The technique of an ``.ecc`` path, checked against the channel's family."""
    base = re.split(r"[\\/]", path)[-1].lower()
    m = re.fullmatch(r"([a-z_]+?)(4?)\.ecc", base)
    if m is None or m.group(1) not in IDS:
        raise TechniqueError(f"no technique file {base!r}", -400)
    if bool(m.group(2)) != family4:
        raise TechniqueError(f"{base} is for the other instrument family", -401)
    return m.group(1)


@dataclass(frozen=True, slots=True)
class Test:
    variable: int  # 0 Ewe, 3 I
    above: bool
    value: float


@dataclass(frozen=True, slots=True)
class DcStep:
    mode: str  # rest, cc, cv
    setpoint: float
    duration_s: float
    tests: tuple[Test, ...] = ()
    exit: int = 0  # 0 next step, 1 next technique, 2 stop
    record_dt_s: float = 0.0
    record_dv_V: float = 0.0
    record_di_A: float = 0.0


@dataclass(frozen=True, slots=True)
class EisSweep:
    galvanostatic: bool
    f_initial: float
    f_final: float
    count: int
    linear: bool
    amplitude: float  # V (PEIS) or A (GEIS)
    level: float  # V or A
    vs_initial: bool
    settle_s: float
    record_dt_s: float
    average_n: int
    wait: float

    def frequencies(self) -> list[float]:
        n = self.count
        if n == 1:
            return [self.f_initial]
        if self.linear:
            return [
                self.f_initial + (self.f_final - self.f_initial) * k / (n - 1) for k in range(n)
            ]
        r = math.log(self.f_final / self.f_initial)
        return [self.f_initial * math.exp(r * k / (n - 1)) for k in range(n)]


@dataclass(frozen=True, slots=True)
class Loop:
    """LOOP: go back to technique ``goto`` (0-based) ``repeat`` more times."""

    repeat: int
    goto: int


@dataclass(frozen=True, slots=True)
class SimTechnique:
    stem: str
    id: int
    steps: tuple[DcStep, ...] = ()
    sweep: EisSweep | None = None
    params: dict[tuple[str, int], Param] = field(default_factory=dict)
    cycles: int = 0  # N_Cycles: the steps run this many more times
    loop: Loop | None = None


class _Reader:
    def __init__(self, stem: str, params: list[Param]) -> None:
        self.stem = stem
        self.by_key = {(p.label, p.index): p for p in params}

    def get(self, label: str, kind: int, index: int = 0) -> float | int | bool:
        p = self.by_key.get((label, index))
        if p is None:
            raise TechniqueError(f"{self.stem}: parameter {label}[{index}] missing", -4)
        if p.type != kind:
            raise TechniqueError(f"{self.stem}: {label} has type {p.type}, expected {kind}", -4)
        v = p.number
        if isinstance(v, float) and not math.isfinite(v):
            raise TechniqueError(f"{self.stem}: {label}[{index}] is not finite", -4)
        return v

    def f(self, label: str, index: int = 0) -> float:
        return float(self.get(label, 2, index))

    def i(self, label: str, index: int = 0) -> int:
        return int(self.get(label, 0, index))

    def b(self, label: str, index: int = 0) -> bool:
        return bool(self.get(label, 1, index))


def _tests(r: _Reader, k: int) -> tuple[Test, ...]:
    out = []
    for n in (1, 2, 3):
        cfg = r.i(f"Test{n}_Config", k)
        if cfg & 1:
            var = cfg >> 5
            if var not in (0, 3):
                raise TechniqueError(f"{r.stem}: limit variable {var} is not simulated", -4)
            out.append(Test(var, bool(cfg & 4), r.f(f"Test{n}_Value", k)))
    return tuple(out)


def _dc(
    r: _Reader, label: str, mode: str, limits: bool, rec: tuple[float, float, float]
) -> tuple[DcStep, ...]:
    n = r.i("Step_number") + 1
    if not 1 <= n <= 20:
        raise TechniqueError(f"{r.stem}: Step_number {n - 1} outside 0..19", -4)
    steps = []
    for k in range(n):
        if r.b("vs_initial", k):
            raise TechniqueError(f"{r.stem}: vs_initial steps are not simulated", -4)
        dur = r.f("Duration_step", k)
        if dur < 0:
            raise TechniqueError(f"{r.stem}: negative duration", -4)
        tests = _tests(r, k) if limits else ()
        exit_ = r.i("Exit_Cond", k) if limits else 0
        steps.append(DcStep(mode, r.f(label, k), dur, tests, exit_, *rec))
    return tuple(steps)


def _cycles(r: _Reader) -> int:
    n = r.i("N_Cycles")
    if n < 0:
        raise TechniqueError(f"{r.stem}: N_Cycles {n} must be >= 0", -4)
    return n


def _eis(r: _Reader, galvano: bool) -> EisSweep:
    lvl = "Initial_Current_step" if galvano else "Initial_Voltage_step"
    sweep = EisSweep(
        galvanostatic=galvano, f_initial=r.f("Initial_frequency"), f_final=r.f("Final_frequency"),
        count=r.i("Frequency_number"), linear=r.b("sweep"),
        amplitude=r.f("Amplitude_Current" if galvano else "Amplitude_Voltage"), level=r.f(lvl),
        vs_initial=r.b("vs_initial"), settle_s=r.f("Duration_step"),
        record_dt_s=r.f("Record_every_dT"), average_n=r.i("Average_N_times"),
        wait=r.f("Wait_for_steady"),
    )  # fmt: skip
    if sweep.f_initial <= 0 or sweep.f_final <= 0 or sweep.count < 1 or sweep.average_n < 1:
        raise TechniqueError(f"{r.stem}: bad sweep {sweep}", -4)
    if sweep.amplitude <= 0:
        raise TechniqueError(f"{r.stem}: amplitude must be > 0", -4)
    return sweep


def parse_technique(stem: str, params: list[Param]) -> SimTechnique:
    r = _Reader(stem, params)
    tid = IDS[stem]
    if stem == "ocv":
        step = DcStep("rest", 0.0, r.f("Rest_time_T"), record_dt_s=r.f("Record_every_dT"),
                      record_dv_V=r.f("Record_every_dE"))  # fmt: skip
        return SimTechnique(stem, tid, (step,))
    if stem in ("cp", "cplimit"):
        r.i("I_Range")
        rec = (r.f("Record_every_dT"), r.f("Record_every_dE"), 0.0)
        steps = _dc(r, "Current_step", "cc", stem == "cplimit", rec)
        return SimTechnique(stem, tid, steps, cycles=_cycles(r))
    if stem in ("ca", "calimit"):
        rec = (r.f("Record_every_dT"), 0.0, r.f("Record_every_dI"))
        steps = _dc(r, "Voltage_step", "cv", stem == "calimit", rec)
        return SimTechnique(stem, tid, steps, cycles=_cycles(r))
    if stem in ("peis", "geis"):
        return SimTechnique(stem, tid, sweep=_eis(r, stem == "geis"))
    if stem == "loop":
        repeat, goto = r.i("loop_N_times"), r.i("protocol_number")
        if repeat < 0 or goto < 0:
            raise TechniqueError(f"loop: loop_N_times {repeat} and protocol_number {goto} "
                                 "must be >= 0", -4)  # fmt: skip
        return SimTechnique(stem, tid, loop=Loop(repeat, goto))
    raise TechniqueError(f"{stem}: not simulated", -4)

"""One simulated MACCOR channel: a test (procedure + data file) on a ChannelEngine.

The engine (simulators.engine) is the firmware that runs steps on the cell; this class
is the MACCOR shell around it: tests with names, Stat/RF1/RF2 codes, a data file per
test numbered from record 1, the (6,10) safety limits, direct mode with the manual's
>= 100 ms rule for (6,8), and the start check/error functions.

Data rows follow the MACCOR export layout (see the module docstring of the driver's
reading in docs, and ``DATA_COLUMNS`` here): the record that ends a step carries the
end status (ES) code; Watt-hr is exact on those rows and ``Amp-hr × Volts`` on others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from labrig.simulators.engine import ChannelEngine, EngineError, SimStep, SimStepResult
from labrig.simulators.maccor.procedure import FlatProcedure, ProcedureError, parse_procedure

__all__ = ["DATA_COLUMNS", "SimChannel"]

DATA_COLUMNS = (
    "Rec#", "Cyc#", "Step", "TestTime", "StepTime", "Amp-hr", "Watt-hr", "Amps", "Volts",
    "State", "ES", "Temp1",
)  # fmt: skip
HEADER = "\t".join(DATA_COLUMNS) + "\r\n"

ES_CODE = {
    "time": 129,
    "max_duration": 129,
    "test_time": 130,
    "cycle": 131,
    "current": 132,
    "voltage": 133,
    "capacity": 134,
    "dvdt": 135,
    "temperature": 136,
    "stopped": 192,
    "safety": 194,
}

# the MacNet manual's texts: (6,11) result 4, (6,2) results 19 and 20 (JSON replies
# carry text where the binary ones carry the number: check the form on a tester)
ARCHIVED = "File name exists in Archive"
NOT_UNIQUE = "Name is not a unique filename"

# Stat
AVAILABLE, ACTIVE, SUSPENDED, COMPLETED, PROBLEM, RESET = 0, 2, 3, 4, 5, 7
# RF1
RF1_CHARGE, RF1_DISCHARGE, RF1_REST, RF1_PROBLEM, RF1_SUSPENDED, RF1_COMPLETE = 1, 2, 4, 29, 30, 31
DIRECT_MIN_INTERVAL_S = 0.1


@dataclass
class _Test:
    name: str
    proc_name: str
    proc: FlatProcedure
    block_id: int
    seq0: int  # engine seq before the first record of this test
    t0: float  # engine test time at the start
    seq_end: int | None = None  # last engine seq of the test once another one started
    results: list[SimStepResult] = field(default_factory=list)


class SimChannel:
    """One MACCOR channel. ``now`` is the tester's clock (virtual in dry runs)."""

    def __init__(self, index: int, engine: ChannelEngine) -> None:
        self.index = index
        self.engine = engine
        self.stat = AVAILABLE
        self.safety: dict[str, float] = {
            "VSafeMax": engine.limits().v_max,
            "VSafeMin": engine.limits().v_min,
            "ISafeChg": engine.limits().i_max,
            "ISafeDis": engine.limits().i_max,
            "PBatSafeChg": 1e3,
            "PBatSafeDis": 1e3,
        }
        self.start_error = ""
        self._tests: list[_Test] = []  # the current test last
        self._files: dict[str, _Test] = {}  # data files by test name, lower case
        self._blocks = 0
        self._reset = False
        self._direct = False
        self._last_direct: float | None = None

    # ---------------------------------------------------------------- tests
    @property
    def test(self) -> _Test | None:
        return self._tests[-1] if self._tests else None

    def archived(self, test_name: str) -> bool:
        """Whether a data file of that name is on the tester (names as on a Windows
        disk: case does not count)."""
        return test_name.lower() in self._files

    def check_start(self, now: float, test_name: str | None = None) -> str:
        """(6,11): "OK" if a test (named ``test_name``, if given) could start now, else
        why not; the manual's result 4 for a name already in the archive."""
        state = self.engine.status(now, live=False).state
        if state in ("running", "paused"):
            return "Channel is active"
        if state == "fault":
            return "Channel has a problem: reset it first"
        if test_name is not None and self.archived(test_name):
            return ARCHIVED
        return "OK"

    def start(self, test_name: str, proc_name: str, text: str | None, now: float) -> str:
        """(6,2): start ``proc_name`` as ``test_name``; "OK" or the reason it did not
        (a name in the archive: the manual's result 19, details from (6,12))."""
        why = self.check_start(now)
        if why != "OK":
            self.start_error = why
            return why
        if not test_name or len(test_name) > 250:
            self.start_error = "Illegal test name"
            return self.start_error
        if self.archived(test_name):
            self.start_error = f"{ARCHIVED}: {test_name}"
            return NOT_UNIQUE
        if text is None:
            self.start_error = f"Procedure {proc_name!r} not found"
            return self.start_error
        try:
            proc = parse_procedure(text)
        except ProcedureError as exc:
            self.start_error = f"Procedure error: {exc}"
            return self.start_error
        return self._begin(test_name, proc, now, proc_name)

    def _begin(self, test_name: str, proc: FlatProcedure, now: float, proc_name: str = "") -> str:
        st = self.engine.status(now, live=False)
        prev = self.test
        if prev is not None and prev.seq_end is None:
            prev.seq_end = st.last_seq
            prev.results = self.engine.step_results(now)
        self._blocks += 1
        try:
            self.engine.start_block(self._blocks, proc.steps, now)
        except EngineError as exc:
            self.start_error = f"Start error: {exc}"
            return self.start_error
        test = _Test(test_name, proc_name, proc, self._blocks, st.last_seq, st.test_time_s)
        self._tests.append(test)
        del self._tests[:-1]  # the current test; every data file stays in _files
        self._files[test_name.lower()] = test  # a tester keeps every test's data file
        self.start_error = ""
        self.stat = ACTIVE
        self._reset = False
        return "OK"

    def suspend(self, now: float) -> str:
        if self.engine.status(now, live=False).state != "running":
            return "Channel is not active"
        self.engine.pause(now)
        return "OK"

    def resume(self, now: float) -> str:
        if self.engine.status(now, live=False).state != "paused":
            return "Channel is not suspended"
        self.engine.resume(now)
        return "OK"

    def reset(self, now: float) -> str:
        """(6,5): output off, test over, problems cleared. Always "OK" (idempotent)."""
        t = self.test
        if t is not None and t.seq_end is None:
            t.results = self.engine.step_results(now)
        self.engine.stop(now)
        if t is not None and t.seq_end is None:
            t.results = self.engine.step_results(now)
        self.engine.reset(now)
        if t is not None and t.seq_end is None:
            t.seq_end = self.engine.status(now, live=False).last_seq
        self._reset = True
        self._direct = False
        return "OK"

    def set_safety(self, values: dict[str, float]) -> bool:
        """(6,10): hold the limits (the engine enforces V and the smaller current)."""
        try:
            self.engine.set_limits(
                values["VSafeMin"], values["VSafeMax"], min(values["ISafeChg"], values["ISafeDis"])
            )
        except EngineError:
            return False
        self.safety = dict(values)
        return True

    # ---------------------------------------------------------------- direct mode
    def start_direct(self, p: dict[str, Any], now: float) -> str:
        """(6,7): start direct mode at the given output ("OK" or why not)."""
        why = self.check_start(now)
        if why != "OK":
            return why
        proc = self._direct_proc(p)
        if proc is None:
            return "Illegal value"
        res = self._begin(str(p.get("TestName", "Direct")), proc, now)
        if res == "OK":
            self._direct = True
            self._last_direct = now
        return res

    def set_direct(self, p: dict[str, Any], now: float) -> str | int:
        """(6,8): change the direct output; codes as the manual: 2 not active, 3 too fast,
        4 direct mode not active."""
        if self.engine.status(now, live=False).state != "running":
            return 2
        if not self._direct:
            return 4
        if self._last_direct is not None and now - self._last_direct < DIRECT_MIN_INTERVAL_S:
            return 3
        proc = self._direct_proc(p)
        if proc is None:
            return "Illegal value"
        self._last_direct = now
        t = self.test
        self.engine.stop(now)
        if t is not None:
            t.results = self.engine.step_results(now)
        self._blocks += 1
        self.engine.start_block(self._blocks, proc.steps, now)
        if t is not None:
            # direct output changes continue the same test and data file
            t.proc = proc
            t.block_id = self._blocks
        return "OK"

    def _direct_proc(self, p: dict[str, Any]) -> FlatProcedure | None:
        cur = p.get("Current", 0.0)
        mode = p.get("ChMode", "C")
        dt = p.get("DataTime", 1.0)
        if not isinstance(cur, int | float) or not math.isfinite(cur) or mode not in "CDR":
            return None
        if not isinstance(dt, int | float) or not math.isfinite(dt) or dt < 0:
            return None
        sign = {"C": 1.0, "D": -1.0, "R": 0.0}[str(mode)]
        from labrig.simulators.engine import SimEnd, SimRecord

        horizon = 1e7
        step = SimStep(
            0,
            "cc" if sign else "rest",
            "direct",
            current_A=sign * abs(float(cur)),
            ends=(SimEnd("time", ">=", horizon, "end_block"),),
            record=SimRecord(every_s=float(dt) or None),
        )
        return FlatProcedure(steps=(step,), numbers=(1,), cycles=(0,), end_number=2)

    # ---------------------------------------------------------------- status
    def _codes(self, now: float) -> tuple[int, int, int, Any]:
        st = self.engine.status(now, live=False)
        t = self.test
        if self._reset or t is None:
            return (RESET if self._reset else AVAILABLE), 0, 0, st
        if st.state == "running":
            step = t.proc.steps[st.step_id or 0] if st.step_id is not None else None
            rf1 = RF1_REST
            if step is not None and step.mode != "rest" and step.current_A != 0:
                rf1 = RF1_CHARGE if step.current_A > 0 else RF1_DISCHARGE
            return ACTIVE, rf1, 0, st
        if st.state == "paused":
            return SUSPENDED, RF1_SUSPENDED, 192, st
        if st.state == "fault":
            return PROBLEM, RF1_PROBLEM, 194, st
        if st.state == "done":
            return COMPLETED, RF1_COMPLETE, 193, st
        return AVAILABLE, 0, 0, st

    def reading(self, now: float) -> dict[str, Any]:
        """(4,7) fields."""
        stat, rf1, rf2, st = self._codes(now)
        t = self.test
        step_no = cycle = 0
        if t is not None and st.step_id is not None and 0 <= st.step_id < len(t.proc.numbers):
            step_no = t.proc.numbers[st.step_id]
            cycle = t.proc.cycles[st.step_id]
        last_rec = 0
        if t is not None:
            last = st.last_seq if t.seq_end is None else t.seq_end
            last_rec = max(0, last - t.seq0)
        test_time = st.test_time_s - t.t0 if t is not None and not self._reset else 0.0
        cap = en = 0.0
        if t is not None and st.state == "running":
            res = self.engine.records_after(max(t.seq0, st.last_seq - 1), now)
            if len(res["seq"]):
                cap = abs(float(res["step_charge_Ah"][-1]))
                en = cap * float(res["voltage_V"][-1])
        return {
            "RF1": rf1,
            "RF2": rf2,
            "Stat": stat,
            "LastRecNum": last_rec,
            "Cycle": cycle,
            "Step": step_no,
            "TestTime": round(test_time, 3),
            "StepTime": round(st.step_time_s, 3),
            "Capacity": cap,
            "Energy": en,
            "Current": abs(st.current_A),
            "Voltage": round(st.voltage_V, 6),
            "TesterTime": _iso(now),
        }

    def names(self) -> dict[str, str]:
        """(4,6) fields, as the manual's JSON example gives them: the name of the channel's
        test (its data file; the last one started, "" before any) and of its procedure."""
        t = self.test
        return {"TestName": t.name if t else "", "ProcName": t.proc_name if t else ""}

    def short_status(self, now: float) -> dict[str, Any]:
        """One row of (4,1)."""
        stat, rf1, rf2, _ = self._codes(now)
        return {"Chan": self.index, "Stat": stat, "RF1": rf1, "RF2": rf2}

    # ---------------------------------------------------------------- data file
    def data_file(self, name: str, offset: int, count: int, now: float) -> tuple[str | None, int]:
        """(1,7) on a test's data file: records ``offset+1 ..`` (at most ``count``)."""
        t = self._files.get(name.lower())
        if t is None:
            return None, 0
        rec = self.engine.records_after(t.seq0 + offset, now)
        seq = rec["seq"].astype(np.int64)
        keep = np.ones(seq.shape[0], dtype=bool)
        if t.seq_end is not None:
            keep &= seq <= t.seq_end
        idx = np.flatnonzero(keep)[:count]
        if idx.size == 0:
            return HEADER, 0
        results = t.results if t.seq_end is not None else self.engine.step_results(now)
        return HEADER + _rows(t, {k: v[idx] for k, v in rec.items()}, results), int(idx.size)


def _iso(now: float) -> str:
    # the tester's wall clock: a fixed epoch plus the simulated time keeps runs repeatable
    return datetime.fromtimestamp(1_700_000_000 + now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _rows(t: _Test, rec: dict[str, npt.NDArray[np.generic]], results: list[SimStepResult]) -> str:
    seq = rec["seq"].astype(np.int64)
    time_s = rec["time_s"].astype(np.float64)
    step_id = rec["step_id"].astype(np.int64)
    cur = rec["current_A"].astype(np.float64)
    volt = rec["voltage_V"].astype(np.float64)
    q = rec["step_charge_Ah"].astype(np.float64)
    temp = rec["temperature_C"].astype(np.float64)
    n = seq.shape[0]
    es = np.zeros(n, dtype=np.int64)
    energy = np.abs(q) * volt
    for i, r in _end_rows(step_id, time_s, results):
        es[i] = ES_CODE.get(r.reason, 192)
        energy[i] = abs(r.energy_Wh)
    # a step runs from the end of the step before it (the test start for the first)
    ends = np.array([t.t0] + [r.end_time_s for r in results], dtype=np.float64)
    k_right = np.searchsorted(ends, time_s, side="right") - 1
    k_left = np.searchsorted(ends, time_s, side="left") - 1
    k = np.where(es > 0, k_left, k_right).clip(0, len(ends) - 1)
    step_time = np.maximum(time_s - ends[k], 0.0)
    nsteps = len(t.proc.steps)
    sid = step_id.clip(0, nsteps - 1)
    numbers = np.asarray(t.proc.numbers, dtype=np.int64)[sid]
    cycles = np.asarray(t.proc.cycles, dtype=np.int64)[sid]
    letters = np.array(
        [b"R" if s.mode == "rest" or s.current_A == 0 else (b"C" if s.current_A > 0 else b"D")
         for s in t.proc.steps], dtype="S1",
    )[sid]  # fmt: skip
    # cv steps may reverse current: the sign of what flows decides then
    letters = np.where(letters == b"R", b"R", np.where(cur >= 0, b"C", b"D")).astype("S1")
    if n <= 64:  # a collection every few seconds: a format string beats building a table
        return "".join(
            f"{a}\t{b}\t{c}\t{d:.3f}\t{e:.3f}\t{f:.9g}\t{g:.9g}\t{h:.9g}\t{i:.6f}\t"
            f"{j.decode()}\t{k}\t{m:.2f}\r\n"
            for a, b, c, d, e, f, g, h, i, j, k, m in zip(
                (seq - t.seq0).tolist(), cycles.tolist(), numbers.tolist(),
                (time_s - t.t0).tolist(), step_time.tolist(), np.abs(q).tolist(),
                energy.tolist(), np.abs(cur).tolist(), volt.tolist(), letters.tolist(),
                es.tolist(), temp.tolist(), strict=True,
            )
        )  # fmt: skip
    columns = [
        pa.array(seq - t.seq0),
        pa.array(cycles),
        pa.array(numbers),
        pa.array(np.round(time_s - t.t0, 3)),
        pa.array(np.round(step_time, 3)),
        pa.array(_sig9(np.abs(q))),
        pa.array(_sig9(energy)),
        pa.array(_sig9(np.abs(cur))),
        pa.array(np.round(volt, 6)),
        _letters(letters),
        pa.array(es),
        pa.array(np.round(temp, 2)),
    ]
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.Table.from_arrays(columns, names=list(DATA_COLUMNS)), sink, _CSV)
    data: bytes = sink.getvalue().to_pybytes()
    return data.decode("ascii")


def _end_rows(
    step_id: npt.NDArray[np.int64], time_s: npt.NDArray[np.float64], results: list[SimStepResult]
) -> list[tuple[int, SimStepResult]]:
    """The last record of each ended step among these records: (row, result) pairs."""
    if not results or step_id.shape[0] == 0:
        return []
    ordered = bool(np.all(time_s[1:] >= time_s[:-1]))
    end_t = np.array([r.end_time_s for r in results], dtype=np.float64)
    end_sid = np.array([r.step_id for r in results], dtype=np.int64)
    if ordered:
        idx = np.searchsorted(time_s, end_t, side="right") - 1
        ok = idx >= 0
        safe = idx.clip(0)
        ok &= time_s[safe] == end_t
        quick = ok & (step_id[safe] == end_sid)
    else:
        ok = np.ones(len(results), dtype=bool)
        quick = np.zeros(len(results), dtype=bool)
        safe = np.zeros(len(results), dtype=np.int64)
    out: list[tuple[int, SimStepResult]] = []
    for j, r in enumerate(results):
        if quick[j]:
            out.append((int(safe[j]), r))
        elif ok[j]:  # another step's record shares the time: look for this step's own
            hit = np.flatnonzero((step_id == r.step_id) & (time_s == r.end_time_s))
            if hit.size:
                out.append((int(hit[-1]), r))
    return out


# Arrow's CSV writer formats a million rows in well under a second (a Python format
# string per row takes several); rounded values print at their rounded length.
_CSV = pacsv.WriteOptions(include_header=False, delimiter="\t", eol="\r\n", quoting_style="none")


def _sig9(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Round to 9 significant digits (the ``%.9g`` the export shows)."""
    out = x.copy()
    nz = np.isfinite(x) & (x != 0)
    exp = np.floor(np.log10(np.abs(x[nz]))).astype(np.int64)
    k = 8 - exp  # decimals to keep
    v = x[nz]
    small = k >= 0
    scale = 10.0 ** np.abs(k)
    out_nz = np.where(small, np.round(v * scale) / scale, np.round(v / scale) * scale)
    out[nz] = out_nz
    return out


def _letters(codes: npt.NDArray[np.bytes_]) -> pa.Array:
    """A one-character string column straight from an ``S1`` array (no Python objects)."""
    n = codes.shape[0]
    offsets = np.arange(n + 1, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(codes.tobytes()))

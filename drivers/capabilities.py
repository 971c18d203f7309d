"""Capability interfaces: how the rest of labrig sees instruments.

The executor talks to instruments only through these ``typing.Protocol`` classes and the
plain data types beside them. A driver knows nothing of protocols: the orchestrator
compiles a protocol's steps into :class:`ChannelStep` blocks (currents in amperes,
C-rates already resolved) and hands them to a :class:`CyclerChannel`, which runs them the
way a cycler's firmware does, ending each step on its own conditions and limits.

Sign convention at this boundary: positive current charges the cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "RECORD_COLUMNS",
    "SEQ_BLOCK",
    "BlockResult",
    "ChamberController",
    "ChannelLimits",
    "ChannelState",
    "ChannelStatus",
    "ChannelStep",
    "CyclerChannel",
    "EisRequest",
    "EisResult",
    "EndAction",
    "EndCondition",
    "EndOp",
    "Furnace",
    "FurnaceSegment",
    "GasFlow",
    "ImpedanceChannel",
    "Instrument",
    "InstrumentError",
    "InstrumentProtocolError",
    "InstrumentTimeout",
    "LimitMismatch",
    "LimitsUnknown",
    "RecordBatch",
    "RecordRule",
    "SafetyTrip",
    "StepEnd",
    "seq_text",
]


class InstrumentError(Exception):
    """Any failure talking to or reported by an instrument."""


class InstrumentTimeout(InstrumentError):
    """The instrument did not answer within its deadline."""


class InstrumentProtocolError(InstrumentError):
    """The instrument answered outside its documented protocol.

    ``command`` is what was sent and ``reply`` what came back, for the report.
    """

    def __init__(self, message: str, *, command: bytes | str = b"", reply: bytes | str = b""):
        super().__init__(message)
        self.command = command
        self.reply = reply

    def __str__(self) -> str:
        base = super().__str__()
        extra = []
        if self.command:
            extra.append(f"sent {self.command!r}")
        if self.reply:
            extra.append(f"got {self.reply!r}")
        return base + (f" ({'; '.join(extra)})" if extra else "")


class LimitMismatch(InstrumentError):
    """Limits read back from the instrument differ from those written."""


class LimitsUnknown(InstrumentError):
    """The channel cannot say which limits it holds: none were written through this
    connection and its protocol has no call that reads them back."""


class SafetyTrip(InstrumentError):
    """A safety limit tripped (on the instrument or in supervision)."""


EndQuantity = Literal["voltage", "current", "time", "capacity", "dvdt", "temperature"]
EndAction = Literal["next", "end_block", "abort", "pause", "notify", "goto"]
EndOp = Literal[">=", "<=", "cross"]


@dataclass(frozen=True, slots=True)
class EndCondition:
    """End a step when ``quantity op value``.

    voltage in V, current magnitude in A, time in s since the step started, capacity in Ah
    passed in this step (magnitude), dvdt in V/s, temperature in °C. ``op`` ``cross``
    means crossing ``value`` from whichever side the step starts on. ``goto`` is the index
    of the step in the same block to continue at when ``action == "goto"``.
    """

    quantity: EndQuantity
    op: EndOp
    value: float
    action: EndAction = "next"
    goto: int | None = None


@dataclass(frozen=True, slots=True)
class RecordRule:
    every_s: float | None = 10.0
    dV_V: float | None = None
    dI_A: float | None = None


@dataclass(frozen=True, slots=True)
class ChannelStep:
    """One step for a cycler channel, in instrument terms.

    mode: ``rest`` (open circuit), ``cc`` (constant ``current_A``), ``cv`` (hold
    ``voltage_V``), ``cccv`` (``current_A`` until ``voltage_V`` then hold it; ``ends`` end the
    whole step, ``cv_ends`` the CV part). ``kind`` is what the data calls it (``charge``,
    ``discharge``, ``rest``, ``ocv``, ``hold``, ``pulse``). ``step_id`` is unique within the
    run and makes commands idempotent on reconnect. ``max_duration_s`` is a hard stop.
    """

    step_id: int
    mode: Literal["rest", "cc", "cv", "cccv"]
    kind: str
    current_A: float = 0.0
    voltage_V: float | None = None
    ends: tuple[EndCondition, ...] = ()
    cv_ends: tuple[EndCondition, ...] = ()
    record: RecordRule = field(default_factory=RecordRule)
    max_duration_s: float | None = None
    temperature_C: float | None = None


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """The instrument-side envelope: written before a run, read back and compared."""

    v_min_V: float
    v_max_V: float
    i_max_A: float
    t_max_C: float | None = None

    def matches(self, other: ChannelLimits, rel: float = 1e-3, abs_: float = 1e-6) -> bool:
        pairs = [
            (self.v_min_V, other.v_min_V),
            (self.v_max_V, other.v_max_V),
            (self.i_max_A, other.i_max_A),
        ]
        if self.t_max_C is not None or other.t_max_C is not None:
            if self.t_max_C is None or other.t_max_C is None:
                return False
            pairs.append((self.t_max_C, other.t_max_C))
        return all(abs(a - b) <= max(abs_, rel * max(abs(a), abs(b))) for a, b in pairs)


class ChannelState(StrEnum):
    idle = "idle"  # available, output off
    running = "running"
    paused = "paused"
    done = "done"  # block finished normally; output off
    fault = "fault"  # instrument-side trip or problem; latched until reset


@dataclass(frozen=True, slots=True)
class StepEnd:
    """How one step of a block ended."""

    step_id: int
    reason: str  # "voltage", "current", "time", "capacity", "dvdt", "max_duration", "safety", ...
    action: EndAction
    time_s: float  # step duration
    charge_Ah: float  # charge passed into the cell during the step (signed, + is charge)
    energy_Wh: float
    end_voltage_V: float


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    state: ChannelState
    block_id: int | None
    step_id: int | None
    step_time_s: float
    voltage_V: float
    current_A: float
    last_seq: int  # sequence number of the newest record the channel holds
    fault: str | None = None
    # the instrument's name for the channel's current test when that test is not one of
    # the bound run's (another run's, or started at the instrument); None otherwise
    other_test: str | None = None


@dataclass(frozen=True, slots=True)
class BlockResult:
    block_id: int
    steps: tuple[StepEnd, ...]
    state: ChannelState  # done, paused (end action pause) or fault
    fault: str | None = None


#: A channel whose instrument numbers the records of each block from 1 (a MACCOR test)
#: gives record ``r`` of block ``k`` the seq ``k * SEQ_BLOCK + r``; channels that count
#: records through the run count from 0 or 1 and stay far below it.
SEQ_BLOCK = 1 << 32


def seq_text(seq: int) -> str:
    """A record's seq as a person reads it: "block 5, record 31" for a block-numbered
    seq (:data:`SEQ_BLOCK`), "record 31" for a running count."""
    if seq < 0:
        return "no record"
    if seq >= SEQ_BLOCK:
        return f"block {seq // SEQ_BLOCK}, record {seq % SEQ_BLOCK}"
    return f"record {seq}"


RECORD_COLUMNS: tuple[str, ...] = (
    "seq",
    "time_s",
    "step_id",
    "current_A",
    "voltage_V",
    "step_charge_Ah",
    "temperature_C",
)


@dataclass(slots=True)
class RecordBatch:
    """Columnar records from a channel. ``seq`` is the channel's own running number.

    ``time_s`` is the channel's test time (monotonic, seconds), ``step_charge_Ah`` the
    signed charge passed since the step began.
    """

    seq: npt.NDArray[np.int64]
    time_s: npt.NDArray[np.float64]
    step_id: npt.NDArray[np.int64]
    current_A: npt.NDArray[np.float64]
    voltage_V: npt.NDArray[np.float64]
    step_charge_Ah: npt.NDArray[np.float64]
    temperature_C: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> RecordBatch:
        f = np.empty(0, dtype=np.float64)
        i = np.empty(0, dtype=np.int64)
        return cls(i, f, i.copy(), f.copy(), f.copy(), f.copy(), f.copy())

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @classmethod
    def concat(cls, batches: Sequence[RecordBatch]) -> RecordBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(*(np.concatenate([getattr(b, c) for b in batches]) for c in RECORD_COLUMNS))

    def select(self, mask: npt.NDArray[np.bool_]) -> RecordBatch:
        return RecordBatch(*(getattr(self, c)[mask] for c in RECORD_COLUMNS))


@runtime_checkable
class Instrument(Protocol):
    """What every instrument offers, whatever else it can do.

    ``name`` is how reports and events name it (usually the station's name for it).
    ``safe_state`` puts it where it can be left alone: output off, heater off, what each
    capability below says. It is idempotent, and every run ends with it.
    """

    @property
    def name(self) -> str: ...

    async def safe_state(self) -> None: ...


@runtime_checkable
class CyclerChannel(Instrument, Protocol):
    """One channel of a battery cycler (or a potentiostat used as one).

    A block runs on the instrument: it ends steps on their conditions and enforces the
    limits itself. The host starts blocks, supervises, and collects records.

    - ``set_limits`` writes the instrument-side envelope; ``get_limits`` reads back what
      the instrument holds (equal to what was written, within ``ChannelLimits.matches``).
    - A block ends each step on its end conditions (or ``max_duration_s``) and reports
      one :class:`StepEnd` per step run, in order, in :class:`BlockResult`.
    - Records carry the channel's own ``seq``, strictly increasing; ``read_records(after)``
      returns only records with ``seq > after``, so reading from the last seq seen never
      repeats or skips a record.
    - ``pause`` holds the running block with the output off; ``resume`` continues it at the
      step it was in.
    """

    def bind_run(self, run_id: str) -> None:
        """The run this channel serves from now on, told before anything else of the run
        is asked (its start, a resume, a read-back after damage).

        A channel that names what it starts on the instrument puts a tag of ``run_id``
        into those names, so the tests of two runs never collide, and takes only the
        bound run's for its own in ``status``, ``attach_block`` and ``read_records``.
        Others keep nothing by name and ignore it.
        """
        ...

    async def set_limits(self, limits: ChannelLimits) -> None: ...

    async def get_limits(self) -> ChannelLimits: ...

    async def start_block(self, block_id: int, steps: Sequence[ChannelStep]) -> None:
        """Start running ``steps``; returns once the instrument has accepted them.

        Starting the block that is already running (same ``block_id``) is a no-op.
        """
        ...

    async def attach_block(
        self, block_id: int, steps: Sequence[ChannelStep], *, time_base_s: float = 0.0
    ) -> None:
        """Re-attach to block ``block_id`` after the host restarted.

        The instrument may still be running it, have paused it, or have finished it:
        adopt whatever it is doing without starting anything; if it holds no trace of
        the block, start it. ``steps`` are the block's steps with their original ids;
        ``time_base_s`` is the channel time the host had reached before the block (for
        instruments whose records count time per test).
        """
        ...

    async def wait_block(
        self, poll_s: float = 60.0, *, max_poll_s: float | None = None
    ) -> BlockResult:
        """Wait until the running block ends (done, paused by an end action, or fault).

        ``poll_s`` is how often the instrument is asked; a channel that can tell from the
        block's steps that it will run much longer may wait up to ``max_poll_s`` between
        questions (drivers.polling). None keeps every interval at ``poll_s``.
        """
        ...

    async def status(self) -> ChannelStatus: ...

    async def read_records(self, after_seq: int) -> RecordBatch:
        """Records with ``seq > after_seq`` that the channel holds now."""
        ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def safe_state(self) -> None:
        """Output off (zero current, open circuit); ends a running block. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class EisRequest:
    frequencies_Hz: tuple[float, ...]
    amplitude_V: float | None = None  # potentiostatic
    amplitude_A: float | None = None  # galvanostatic
    bias: Literal["ocv", "voltage", "current"] = "ocv"
    bias_V: float | None = None
    bias_A: float | None = None


@dataclass(frozen=True, slots=True)
class EisResult:
    frequency_Hz: npt.NDArray[np.float64]
    z_real_ohm: npt.NDArray[np.float64]
    z_imag_ohm: npt.NDArray[np.float64]
    dc_voltage_V: float
    duration_s: float


@runtime_checkable
class ImpedanceChannel(Instrument, Protocol):
    """A potentiostat channel that can measure impedance and open-circuit voltage."""

    async def measure_eis(self, request: EisRequest) -> EisResult:
        """One spectrum at exactly ``request.frequencies_Hz``, in that order (finite
        impedances, one per frequency); ``dc_voltage_V`` is the bias it was measured at."""
        ...

    async def measure_ocv(self, duration_s: float) -> float:
        """The cell's open-circuit voltage after resting ``duration_s`` (> 0) at open
        circuit; a non-positive or non-finite duration is refused."""
        ...

    async def safe_state(self) -> None:
        """Cell off. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class FurnaceSegment:
    """A programme segment as the controller runs it."""

    kind: Literal["ramp", "dwell", "step", "end"]
    target_C: float | None = None
    rate_K_per_s: float | None = None
    duration_s: float | None = None


@runtime_checkable
class Furnace(Instrument, Protocol):
    """A furnace controller that runs programmes (ramps, dwells, steps) itself.

    ``program_status`` is one of ``reset``, ``running``, ``hold``, ``holdback``,
    ``complete``. A programme is loaded while reset, started with ``run_program``, held
    with ``hold_program`` (its time stops, the setpoint stays where it is) and resumed
    with ``run_program``, which continues a held programme where it stopped.
    """

    async def read_temperature(self) -> float:
        """Process value, °C."""
        ...

    async def read_setpoint(self) -> float:
        """The working setpoint (where a ramp or programme is now), °C."""
        ...

    async def read_output(self) -> float:
        """Heater output, %."""
        ...

    async def set_setpoint(self, celsius: float, rate_K_per_s: float | None = None) -> None:
        """Go to ``celsius`` at ``rate_K_per_s`` (None: no rate limit), outside a programme."""
        ...

    async def load_program(self, segments: Sequence[FurnaceSegment]) -> None:
        """Write a programme (refused while one runs or is held)."""
        ...

    async def run_program(self) -> None:
        """Start the loaded programme, or resume a held one where it stopped."""
        ...

    async def hold_program(self) -> None:
        """Hold the running programme: its time stops and the setpoint stays."""
        ...

    async def read_program(self) -> list[FurnaceSegment]:
        """The programme the controller holds, read back segment by segment up to its
        ``end`` (included), as the controller stores it (rates and times at its
        resolution): a restarted host compares it with the one it loaded."""
        ...

    async def program_status(self) -> str: ...

    async def safe_state(self) -> None:
        """Output 0, programme reset. Idempotent."""
        ...


@runtime_checkable
class GasFlow(Instrument, Protocol):
    """One mass-flow controller: a setpoint in sccm, a measured flow, a selected gas."""

    async def set_flow(self, sccm: float) -> None:
        """Set the flow setpoint (>= 0 sccm); a negative or non-finite flow is refused."""
        ...

    async def read_flow(self) -> float:
        """Measured mass flow, sccm."""
        ...

    async def select_gas(self, gas: str) -> None:
        """Select a gas by name (``N2``, ``O2``, ``Ar``, ...); an unknown name is refused."""
        ...

    async def safe_state(self) -> None:
        """The flow the station configured as safe; by default the flow is left as it is,
        so a furnace purge stays on through a trip. Idempotent."""
        ...


@runtime_checkable
class ChamberController(Instrument, Protocol):
    """A climate chamber holding the air around the cells at a setpoint."""

    async def set_temperature(self, celsius: float) -> None:
        """Condition the chamber towards ``celsius``; a non-finite setpoint, or one the
        chamber cannot hold, is refused."""
        ...

    async def read_temperature(self) -> float:
        """Measured air temperature, °C."""
        ...

    async def safe_state(self) -> None:
        """Conditioning stops (the chamber drifts to room temperature and keeps
        answering). Idempotent."""
        ...

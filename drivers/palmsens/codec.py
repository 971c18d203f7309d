"""MethodSCRIPT codec: typed requests to script text, instrument output to typed events.

Pure functions and one incremental decoder; nothing here does I/O.

Facts (PalmSens' MethodSCRIPT documentation and public examples):

- A script is sent as the command ``e`` on its own line, the script lines, and an empty
  line. Numbers in scripts are an integer followed by an optional SI prefix (``100m``,
  ``200k``): no decimal point. The device echoes the command's first character (``e``),
  streams the output, and ends with an empty line.
- Output lines: ``M<4 hex>`` opens a measurement loop (the hex is the technique), ``*``
  closes it; ``L``/``+`` a plain loop; ``C<4 hex>``/``-`` a scan; ``P`` a data package;
  ``!XXXX`` an error (optionally after the echoed command character and followed by
  ``: Line L, Col C``).
- A package is ``P`` and ``;``-separated variables: a 2-letter type, 7 hex digits of
  (value + 2**27), one SI prefix character, then optional ``,``-separated metadata
  (``1X`` status bits, ``2XX`` current range, ``4X`` noise). ``     nan`` (eight
  characters) stands for an invalid value.
- EmStat Pico links use XON/XOFF; stray flow-control bytes are dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from labrig.drivers.capabilities import InstrumentError, InstrumentProtocolError

__all__ = [
    "ERROR_MEANINGS",
    "SI_PREFIX",
    "VARIABLE_TYPES",
    "Echo",
    "EisSegment",
    "Event",
    "LoopEnd",
    "LoopStart",
    "MethodScriptError",
    "Package",
    "ScriptDecoder",
    "ScriptEnd",
    "ScriptErrorLine",
    "Variable",
    "cell_off_script",
    "cp_script",
    "decode_error",
    "decode_package",
    "decode_value",
    "eis_script",
    "eis_segments",
    "format_number",
    "ocp_script",
    "parse_firmware",
    "parse_serial",
]

#: SI prefix characters of packages (``i`` marks a plain integer).
SI_PREFIX: dict[str, float] = {
    "a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, " ": 1.0,
    "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "i": 1.0,
}  # fmt: skip

#: The variable types this driver reads (2-letter code -> meaning, unit).
VARIABLE_TYPES: dict[str, tuple[str, str]] = {
    "ab": ("WE potential", "V"),
    "ba": ("WE current", "A"),
    "cc": ("Z real", "ohm"),
    "cd": ("Z imaginary", "ohm"),
    "da": ("applied potential", "V"),
    "db": ("applied current", "A"),
    "dc": ("applied frequency", "Hz"),
    "eb": ("time", "s"),
}

#: Error codes we name in messages (MethodSCRIPT manual, appendix A; check on the unit).
ERROR_MEANINGS: dict[int, str] = {
    0x0003: "invalid or unknown command",
    0x0006: "not allowed now (no script running, or one is)",
    0x001B: "not supported by this instrument",
    0x0032: "cell overload",
    0x4001: "script syntax error",
}

_OFFSET = 1 << 27
_MAX_LINE = 4096
_FLOW_CONTROL = bytes([0x11, 0x13])
_HEX = frozenset("0123456789abcdefABCDEF")
_ERROR_RE = re.compile(r"^([A-Za-z]?)!([0-9A-Fa-f]{4})(?::\s*(.*))?$")
_LINE_COL_RE = re.compile(r"Line\s+(\d+)(?:,\s*Col\s+(\d+))?")

# script literals: largest prefix first, so the shortest exact form wins
_LITERAL_PREFIXES: tuple[tuple[str, float], ...] = (
    ("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0),
    ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12), ("f", 1e-15), ("a", 1e-18),
)  # fmt: skip


class MethodScriptError(InstrumentError):
    """The instrument answered a script with ``!XXXX`` (rejected it or failed running it)."""

    def __init__(
        self,
        code: int,
        detail: str,
        *,
        command: str = "",
        reply: str = "",
        during_run: bool = False,
    ) -> None:
        meaning = ERROR_MEANINGS.get(code, "unlisted error")
        where = f" at {detail}" if detail else ""
        super().__init__(f"MethodSCRIPT error 0x{code:04X} ({meaning}){where}")
        self.code = code
        self.detail = detail
        self.command = command
        self.reply = reply
        #: True for a run-time error (after ``e`` was echoed), False for a rejected script
        self.during_run = during_run


# --------------------------------------------------------------------------- scripts
def format_number(value: float) -> str:
    """A script literal for ``value``: integer + SI prefix, 7 significant digits at most.

    ``0.1 -> "100m"``, ``7e6 -> "7M"``, ``1234.5 -> "1234500m"``, ``-0.01 -> "-10m"``.
    """
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"a MethodSCRIPT number must be finite, got {value!r}")
    if value == 0:
        return "0"
    for prefix, factor in _LITERAL_PREFIXES:
        mantissa = round(value / factor)
        if mantissa == 0 or abs(mantissa) >= _OFFSET:
            continue
        if abs(mantissa * factor - value) <= 1e-7 * abs(value):
            return f"{mantissa}{prefix}"
    raise ValueError(f"{value!r} cannot be written as a MethodSCRIPT number")


@dataclass(frozen=True, slots=True)
class EisSegment:
    """One ``meas_loop_eis`` sweep: ``n`` log-spaced points from ``f_start`` to ``f_end``."""

    f_start_Hz: float
    f_end_Hz: float
    n: int


def eis_segments(frequencies_Hz: Sequence[float], rel_tol: float = 1e-6) -> list[EisSegment]:
    """Split a frequency list into log-spaced sweeps the instrument runs natively.

    A list that is geometric (as protocols generate them) becomes one sweep; any other
    list becomes the fewest geometric runs, in order.
    """
    f = [float(x) for x in frequencies_Hz]
    if not f:
        raise ValueError("an impedance sweep needs at least one frequency")
    for x in f:
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"frequencies must be finite and > 0 Hz, got {x!r}")
    out: list[EisSegment] = []
    i = 0
    while i < len(f):
        j = i + 1
        if j < len(f) and f[j] != f[i]:
            ratio = math.log(f[j] / f[i])
            while j + 1 < len(f) and abs(math.log(f[j + 1] / f[j]) - ratio) <= rel_tol * max(
                1.0, abs(ratio)
            ):
                j += 1
            out.append(EisSegment(f[i], f[j], j - i + 1))
            i = j + 1
        else:
            out.append(EisSegment(f[i], f[i], 1))
            i += 1
    return out


def _script(lines: Sequence[str]) -> str:
    # the command e, the script, and the empty line that ends it
    return "e\n" + "".join(f"{line}\n" for line in lines) + "\n"


def eis_script(
    segments: Sequence[EisSegment],
    *,
    amplitude_V: float,
    dc_V: float,
    pgstat_mode: int = 3,
    current_range_A: tuple[float, float] = (1e-9, 0.01),
) -> str:
    """Potentiostatic EIS at ``dc_V``: one ``meas_loop_eis`` per segment.

    ``amplitude_V`` is written as MethodSCRIPT's amplitude, which the manual gives in
    V rms (check). Packages carry frequency (``dc``), Z real (``cc``) and Z imaginary
    (``cd``). ``on_finished`` switches the cell off even after an abort.
    """
    if not (math.isfinite(amplitude_V) and amplitude_V > 0):
        raise ValueError(f"EIS amplitude must be > 0 V, got {amplitude_V!r}")
    lo, hi = current_range_A
    lines = [
        "var f",
        "var r",
        "var j",
        "set_pgstat_chan 0",
        f"set_pgstat_mode {int(pgstat_mode)}",
        f"set_autoranging ba {format_number(lo)} {format_number(hi)}",
        f"set_e {format_number(dc_V)}",
        "cell_on",
    ]
    for s in segments:
        lines += [
            f"meas_loop_eis f r j {format_number(amplitude_V)} {format_number(s.f_start_Hz)} "
            f"{format_number(s.f_end_Hz)} {int(s.n)} {format_number(dc_V)}",
            "  pck_start",
            "    pck_add f",
            "    pck_add r",
            "    pck_add j",
            "  pck_end",
            "endloop",
        ]
    lines += ["on_finished:", "  cell_off"]
    return _script(lines)


def ocp_script(interval_s: float, duration_s: float, *, pgstat_mode: int = 2) -> str:
    """Open-circuit potential every ``interval_s`` for ``duration_s`` (cell off)."""
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"OCP interval must be > 0 s, got {interval_s!r}")
    if not (math.isfinite(duration_s) and duration_s >= interval_s):
        raise ValueError(f"OCP duration must be >= the interval, got {duration_s!r}")
    lines = [
        "var p",
        "set_pgstat_chan 0",
        f"set_pgstat_mode {int(pgstat_mode)}",
        "cell_off",
        f"meas_loop_ocp p {format_number(interval_s)} {format_number(duration_s)}",
        "  pck_start",
        "    pck_add p",
        "  pck_end",
        "endloop",
        "on_finished:",
        "  cell_off",
    ]
    return _script(lines)


def cp_script(
    current_A: float,
    interval_s: float,
    duration_s: float,
    *,
    pgstat_mode: int = 2,
    current_range_A: float = 0.01,
) -> str:
    """Chronopotentiometry: hold ``current_A`` (+ charges), sample E and I every interval.

    The galvanostatic mode number differs between models (check): it is a setting.
    """
    if not math.isfinite(current_A):
        raise ValueError(f"CP current must be finite, got {current_A!r}")
    if abs(current_A) > current_range_A:
        raise ValueError(
            f"CP current {current_A!r} A is outside the current range ±{current_range_A} A"
        )
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"CP interval must be > 0 s, got {interval_s!r}")
    if not (math.isfinite(duration_s) and duration_s >= interval_s):
        raise ValueError(f"CP duration must be >= the interval, got {duration_s!r}")
    lines = [
        "var p",
        "var c",
        "set_pgstat_chan 0",
        f"set_pgstat_mode {int(pgstat_mode)}",
        f"set_range ba {format_number(current_range_A)}",
        "cell_on",
        f"meas_loop_cp p c {format_number(current_A)} {format_number(interval_s)} "
        f"{format_number(duration_s)}",
        "  pck_start",
        "    pck_add p",
        "    pck_add c",
        "  pck_end",
        "endloop",
        "on_finished:",
        "  cell_off",
    ]
    return _script(lines)


def cell_off_script() -> str:
    """The smallest script that leaves the cell switched off."""
    return _script(["cell_off"])


# --------------------------------------------------------------------------- replies
def parse_firmware(line1: bytes, line2: bytes) -> str:
    """The firmware text from the two lines answering ``t`` (``t...`` and ``...*``)."""
    a = line1.rstrip(b"\r\n")
    b = line2.rstrip(b"\r\n")
    if not a.startswith(b"t") or not b.endswith(b"*"):
        raise InstrumentProtocolError(
            "firmware reply is not 't...' then '...*'", command=b"t\n", reply=line1 + line2
        )
    try:
        return (a[1:] + b" " + b[:-1]).decode("ascii").strip()
    except UnicodeDecodeError:
        raise InstrumentProtocolError(
            "firmware reply is not ASCII", command=b"t\n", reply=line1 + line2
        ) from None


def parse_serial(line: bytes) -> str:
    """The serial number from the line answering ``i``."""
    a = line.rstrip(b"\r\n")
    if not a.startswith(b"i") or len(a) < 2 or not a[1:].isascii() or not a[1:].isalnum():
        raise InstrumentProtocolError(
            "serial-number reply is not 'i<serial>'", command=b"i\n", reply=line
        )
    return a[1:].decode("ascii")


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable of a package: type code, value in SI units, and its metadata."""

    type: str
    value: float
    status: int = 0
    current_range: int | None = None

    @property
    def overload(self) -> bool:
        return bool(self.status & 0x2)


@dataclass(frozen=True, slots=True)
class Package:
    variables: tuple[Variable, ...]

    def get(self, type_code: str) -> float:
        """The value of the first variable of ``type_code``; KeyError if absent."""
        for v in self.variables:
            if v.type == type_code:
                return v.value
        raise KeyError(type_code)


@dataclass(frozen=True, slots=True)
class Echo:
    char: str


@dataclass(frozen=True, slots=True)
class LoopStart:
    kind: Literal["M", "L", "C"]
    technique: int | None


@dataclass(frozen=True, slots=True)
class LoopEnd:
    kind: Literal["M", "L", "C"]


@dataclass(frozen=True, slots=True)
class ScriptErrorLine:
    code: int
    detail: str
    line: int | None
    column: int | None
    raw: str


@dataclass(frozen=True, slots=True)
class ScriptEnd:
    pass


Event = Echo | LoopStart | LoopEnd | Package | ScriptErrorLine | ScriptEnd


def decode_value(field_: str) -> tuple[float, str]:
    """``'8000010m'`` -> ``(0.016, 'm')``. Raises ValueError when malformed."""
    if len(field_) != 8:
        raise ValueError(f"value field {field_!r} is not 7 hex digits + a prefix")
    if field_ == "     nan":
        return math.nan, " "
    digits, prefix = field_[:7], field_[7]
    if not all(c in _HEX for c in digits):
        raise ValueError(f"value {digits!r} is not 7 hex digits")
    if prefix not in SI_PREFIX:
        raise ValueError(f"unknown SI prefix {prefix!r}")
    return (int(digits, 16) - _OFFSET) * SI_PREFIX[prefix], prefix


def _decode_variable(text: str) -> Variable:
    head, *meta = text.split(",")
    if len(head) != 10:
        raise ValueError(f"variable {head!r} is not type + 8 characters")
    vtype = head[:2]
    if not (vtype.isascii() and vtype.isalpha() and vtype.islower()):
        raise ValueError(f"variable type {vtype!r} is not two lower-case letters")
    value, _ = decode_value(head[2:])
    status = 0
    crange: int | None = None
    for tok in meta:
        if len(tok) < 2 or not all(c in _HEX for c in tok):
            raise ValueError(f"metadata {tok!r} is not a hex token")
        if tok[0] == "1" and len(tok) == 2:
            status = int(tok[1], 16)
        elif tok[0] == "2" and len(tok) == 3:
            crange = int(tok[1:], 16)
        # other kinds (4X noise, ...) are accepted and ignored
    return Variable(vtype, value, status, crange)


def decode_package(line: str) -> Package:
    """A ``P...`` line (without the line end) as a :class:`Package`.

    Raises :class:`InstrumentProtocolError` naming the line when it is malformed.
    """
    if not line.startswith("P") or len(line) < 2:
        raise InstrumentProtocolError("not a data package", reply=line[:200])
    try:
        return Package(tuple(_decode_variable(v) for v in line[1:].split(";")))
    except ValueError as exc:
        raise InstrumentProtocolError(f"bad data package: {exc}", reply=line[:200]) from None


def decode_error(line: str) -> ScriptErrorLine | None:
    """``'e!4001: Line 3, Col 7'`` -> the error; None if the line is no error."""
    m = _ERROR_RE.match(line)
    if m is None:
        return None
    detail = (m.group(3) or "").strip()
    lc = _LINE_COL_RE.search(detail)
    line_no = int(lc.group(1)) if lc else None
    col = int(lc.group(2)) if lc and lc.group(2) else None
    return ScriptErrorLine(int(m.group(2), 16), detail, line_no, col, line)


_END_OF: dict[str, Literal["M", "L", "C"]] = {"*": "M", "+": "L", "-": "C"}


@dataclass
class ScriptDecoder:
    """Incremental decoder of one script's output: ``feed(bytes) -> events``.

    It checks the grammar as it goes (loop markers nest and match, packages are well
    formed, lines are bounded) and raises :class:`InstrumentProtocolError` naming the
    offending line on the first violation. ``done`` turns true at the empty line that
    ends the script.
    """

    max_line: int = _MAX_LINE
    stack: list[Literal["M", "L", "C"]] = field(default_factory=list)
    done: bool = False
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Event]:
        if data:
            self._buf += data.translate(None, _FLOW_CONTROL)
        events: list[Event] = []
        while not self.done:
            idx = self._buf.find(b"\n")
            if idx < 0:
                if len(self._buf) > self.max_line:
                    head = bytes(self._buf[:80])
                    self._buf.clear()
                    raise InstrumentProtocolError(
                        f"output line longer than {self.max_line} bytes", reply=head
                    )
                break
            raw = bytes(self._buf[:idx])
            del self._buf[: idx + 1]
            events.append(self._line(raw))
        return events

    @property
    def pending(self) -> bytes:
        """Bytes received after the end of the script (or not yet a whole line)."""
        return bytes(self._buf)

    def _line(self, raw: bytes) -> Event:
        if len(raw) > self.max_line:
            raise InstrumentProtocolError(
                f"output line longer than {self.max_line} bytes", reply=raw[:80]
            )
        try:
            line = raw.decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            raise InstrumentProtocolError("output line is not ASCII", reply=raw[:200]) from None
        if line == "":
            if self.stack:
                raise InstrumentProtocolError(
                    f"script output ended inside an open {self.stack[-1]} loop", reply=b"\n"
                )
            self.done = True
            return ScriptEnd()
        c = line[0]
        if c == "P":
            return decode_package(line)
        if c in "MC" and len(line) == 5 and all(h in _HEX for h in line[1:]):
            kind: Literal["M", "L", "C"] = "M" if c == "M" else "C"
            self.stack.append(kind)
            return LoopStart(kind, int(line[1:], 16))
        if line == "L":
            self.stack.append("L")
            return LoopStart("L", None)
        if line in _END_OF:
            want = _END_OF[line]
            if not self.stack or self.stack[-1] != want:
                opened = self.stack[-1] if self.stack else "no"
                raise InstrumentProtocolError(
                    f"loop end {line!r} does not close the open {opened} loop", reply=raw
                )
            self.stack.pop()
            return LoopEnd(want)
        err = decode_error(line)
        if err is not None:
            # a run-time error ends the script where it stands: loops stay unclosed
            self.stack.clear()
            return err
        if len(line) == 1 and line.isalpha():
            return Echo(line)
        raise InstrumentProtocolError("unexpected line in script output", reply=raw[:200])

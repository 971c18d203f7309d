"""The MethodSCRIPT subset the simulated EmStat understands: numbers, packages, scripts.

Read from PalmSens' public MethodSCRIPT documentation, independently of
any driver: script numbers are an integer with an optional SI prefix (``100m``,
``200k``) or an ``i`` suffix, never a decimal point; a package value is 7 hex digits of
(value + 2**27) and one SI prefix character; a zero has the prefix ``' '``.

The parser turns script text into a :class:`Program` or raises :class:`ScriptSyntax`
with the line and column the device reports. The error codes are this simulator's
choice within the manual's ranges (check against appendix A on a real unit).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = [
    "CODE_BUSY",
    "CODE_OVERLOAD",
    "CODE_SYNTAX",
    "CODE_UNKNOWN_COMMAND",
    "CODE_UNKNOWN_VARIABLE",
    "MeasLoop",
    "Program",
    "ScriptSyntax",
    "Statement",
    "encode_value",
    "parse_number",
    "parse_script",
]

CODE_UNKNOWN_COMMAND = 0x0003  # communication command not known
CODE_BUSY = 0x0006  # not allowed in this state (e.g. abort with nothing running)
CODE_OVERLOAD = 0x0032  # measurement failed on the cell (overload / cell not available)
CODE_SYNTAX = 0x4001
CODE_UNKNOWN_VARIABLE = 0x4003

_OFFSET = 1 << 27
_PACKAGE_PREFIXES: tuple[tuple[str, float], ...] = (
    ("a", 1e-18), ("f", 1e-15), ("p", 1e-12), ("n", 1e-9), ("u", 1e-6), ("m", 1e-3),
    (" ", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15), ("E", 1e18),
)  # fmt: skip
_LITERAL_FACTORS = {p: f for p, f in _PACKAGE_PREFIXES if p != " "} | {"": 1.0, "i": 1.0}
_NUMBER = re.compile(r"^([+-]?\d+)([afpnumkMGTPEi]?)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")


def encode_value(value: float) -> str:
    """7 hex digits + SI prefix for a package (the finest prefix that fits; NaN: ``nan``)."""
    if math.isnan(value):
        return "     nan"
    if value == 0:
        return f"{_OFFSET:07X} "
    for prefix, factor in _PACKAGE_PREFIXES:
        m = round(value / factor)
        if abs(m) < _OFFSET:
            return f"{m + _OFFSET:07X}{prefix}"
    raise ValueError(f"{value!r} is too large for a MethodSCRIPT package")


def parse_number(token: str) -> float:
    """A script literal (``100m``, ``-5``, ``11i``) as a float; ValueError if malformed."""
    m = _NUMBER.match(token)
    if m is None:
        raise ValueError(token)
    return int(m.group(1)) * _LITERAL_FACTORS[m.group(2)]


class ScriptSyntax(Exception):
    """The script cannot be loaded: code, 1-based line and column."""

    def __init__(self, code: int, line: int, column: int) -> None:
        super().__init__(f"!{code:04X}: Line {line}, Col {column}")
        self.code, self.line, self.column = code, line, column


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    args: tuple[str, ...]
    numbers: tuple[float, ...]
    line: int


@dataclass(slots=True)
class MeasLoop:
    """``meas_loop_<technique> <outputs...> <numbers...>`` ... ``endloop``."""

    technique: str
    outputs: tuple[str, ...]
    numbers: tuple[float, ...]
    line: int
    body: list[Statement] = field(default_factory=list)


@dataclass(slots=True)
class Program:
    variables: set[str] = field(default_factory=set)
    main: list[Statement | MeasLoop] = field(default_factory=list)
    on_finished: list[Statement] = field(default_factory=list)


# command -> argument kinds: v = declared variable, n = number, t = variable type, w = new name
_COMMANDS: dict[str, str] = {
    "var": "w",
    "set_pgstat_chan": "n",
    "set_pgstat_mode": "n",
    "set_max_bandwidth": "n",
    "set_range": "tn",
    "set_autoranging": "tnn",
    "set_range_minmax": "tnn",
    "set_cr": "n",
    "set_e": "n",
    "set_i": "n",
    "cell_on": "",
    "cell_off": "",
    "wait": "n",
    "pck_start": "",
    "pck_add": "v",
    "pck_end": "",
}
_LOOPS: dict[str, str] = {
    "meas_loop_eis": "vvvnnnnn",
    "meas_loop_ocp": "vnn",
    "meas_loop_cp": "vvnnn",
}
_IN_LOOP_ONLY = {"pck_start", "pck_add", "pck_end"}


def parse_script(lines: list[str]) -> Program:
    """Parse the script lines (between ``e`` and the empty line)."""
    prog = Program()
    loop: MeasLoop | None = None
    finished = False
    for n, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        col0 = len(raw) - len(raw.lstrip()) + 1
        if text == "on_finished:":
            if loop is not None or finished:
                raise ScriptSyntax(CODE_SYNTAX, n, col0)
            finished = True
            continue
        name, *args = text.split()
        if name == "endloop":
            if loop is None or args:
                raise ScriptSyntax(CODE_SYNTAX, n, col0)
            prog.main.append(loop)
            loop = None
            continue
        kinds = _LOOPS.get(name) if name in _LOOPS else _COMMANDS.get(name)
        if kinds is None:
            raise ScriptSyntax(CODE_SYNTAX, n, col0)
        if len(args) != len(kinds):
            raise ScriptSyntax(CODE_SYNTAX, n, col0 + len(name))
        numbers: list[float] = []
        col = col0 + len(name) + 1
        for kind, arg in zip(kinds, args, strict=True):
            col = raw.find(arg, col - 1) + 1
            if kind == "n":
                try:
                    numbers.append(parse_number(arg))
                except ValueError:
                    raise ScriptSyntax(CODE_SYNTAX, n, col) from None
            elif kind == "w":
                if not _NAME.match(arg) or arg in prog.variables:
                    raise ScriptSyntax(CODE_SYNTAX, n, col)
                prog.variables.add(arg)
            elif kind == "v":
                if arg not in prog.variables:
                    raise ScriptSyntax(CODE_UNKNOWN_VARIABLE, n, col)
            elif kind == "t" and not (len(arg) == 2 and arg.isalpha() and arg.islower()):
                raise ScriptSyntax(CODE_SYNTAX, n, col)
        if name in _LOOPS:
            if loop is not None or finished:
                raise ScriptSyntax(CODE_SYNTAX, n, col0)  # no nested loops in this subset
            outs = tuple(a for k, a in zip(kinds, args, strict=True) if k == "v")
            loop = MeasLoop(name.removeprefix("meas_loop_"), outs, tuple(numbers), n)
            continue
        st = Statement(name, tuple(args), tuple(numbers), n)
        if name in _IN_LOOP_ONLY:
            if loop is None:
                raise ScriptSyntax(CODE_SYNTAX, n, col0)
            loop.body.append(st)
        elif finished:
            prog.on_finished.append(st)
        elif loop is not None:
            raise ScriptSyntax(CODE_SYNTAX, n, col0)  # only packages inside a loop here
        else:
            prog.main.append(st)
    if loop is not None:
        raise ScriptSyntax(CODE_SYNTAX, loop.line, 1)
    return prog

"""The scanner, quantities and end conditions of step strings (see
:mod:`protocols.stepstrings` for the grammar), and loop-ending conditions.
"""

from __future__ import annotations

import re
from typing import Any

from .units import Dimension, UnitError, parse_current, parse_quantity

__all__ = [
    "StepSyntaxError",
    "parse_conditions",
    "parse_loop_condition",
]

_COND_HINT = (
    "a condition (a voltage '4.2 V', a current 'C/50' or '50 µA', a capacity '1.2 mAh' or "
    "'80% capacity', a time '2 h', 'dV/dt < 1 mV/h', 'T > 40 °C')"
)
# Words that end a quantity: a number followed by one of these has no unit.
_KEYWORDS = frozenset(
    {"or", "until", "for", "then", "at", "every", "and", "rest", "repeat", "amplitude"}
    | {"per", "after", "within", "naturally", "times"}
)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QTY_RE = re.compile(
    rf"(?:C\s*/\s*{_NUMBER}|{_NUMBER}(?:\s*%|(?:\s?(?P<unit>[^\s,()]+))?))(?=[\s,()]|$)"
)
_OPS = {
    "<=": "<=",
    "=<": "<=",
    "≤": "<=",
    ">=": ">=",
    "=>": ">=",
    "≥": ">=",
    "<": "<",
    ">": ">",
}
_OP_RE = re.compile(r"(<=|=<|>=|=>|≤|≥|<|>)\s*")
_MAX_TEXT = 500


class StepSyntaxError(ValueError):
    """A step string that does not follow the grammar; the message says where and why."""


class _Fail(Exception):
    """Where parsing stopped: ``expected`` what, or (``plain``) a complete explanation."""

    def __init__(self, expected: str, pos: int, *, plain: bool = False) -> None:
        super().__init__(expected)
        self.expected = expected
        self.pos = pos
        self.plain = plain


class _Scanner:
    """A cursor over one string with case-insensitive keyword matching."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.ws()
        return self.pos >= len(self.text)

    def kw(self, *phrases: str) -> str | None:
        """Consume the first phrase (tried longest first) that starts here; return it."""
        self.ws()
        for phrase in sorted(phrases, key=len, reverse=True):
            end = self.pos + len(phrase)
            chunk = self.text[self.pos : end]
            if chunk.lower() != phrase.lower():
                continue
            # A keyword ends at a word boundary unless it is punctuation itself.
            if phrase[-1].isalnum() and end < len(self.text) and self.text[end].isalnum():
                continue
            self.pos = end
            return phrase
        return None

    def expect(self, expected: str, *phrases: str) -> str:
        got = self.kw(*phrases)
        if got is None:
            raise _Fail(expected, self.pos)
        return got

    def comma(self) -> bool:
        self.ws()
        if self.text.startswith(",", self.pos):
            self.pos += 1
            return True
        return False

    def op(self) -> str | None:
        self.ws()
        m = _OP_RE.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return _OPS[m.group(1)]

    def quantity(self, expected: str) -> str:
        """Read ``number [unit]`` or ``C/number``; a keyword after the number is not a unit."""
        self.ws()
        m = _QTY_RE.match(self.text, self.pos)
        if m is None:
            raise _Fail(expected, self.pos)
        end = m.end()
        unit = m.group("unit")
        if unit is not None and unit.lower() in _KEYWORDS:
            end = m.start("unit")
        raw = self.text[self.pos : end].strip()
        self.pos = end
        return raw

    def word(self) -> str:
        self.ws()
        m = re.compile(r"[^\s,]+").match(self.text, self.pos)
        if m is None:
            raise _Fail("a name", self.pos)
        self.pos = m.end()
        return m.group(0)


def _word_at(text: str, pos: int) -> tuple[int, str]:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        return 0, ""
    before = text[:pos].split()
    if pos > 0 and not text[pos - 1].isspace() and before:
        # Inside a word (e.g. the unit right after a number): name the whole word.
        rest = text[pos:].split()
        return len(before), before[-1] + (rest[0] if rest else "")
    return len(before) + 1, text[pos:].split()[0]


def _fail_message(text: str, fail: _Fail, what: str = "a step") -> str:
    n, word = _word_at(text, fail.pos)
    where = f"at word {n} ({word!r})" if word else "at the end"
    if fail.plain:
        return f"{text!r} is not {what}: {fail.expected} ({where})"
    return f"{text!r} is not {what}: expected {fail.expected} {where}"


# --------------------------------------------------------------------------- quantities


def _as(raw: str, dim: Dimension, start: int, what: str) -> float:
    try:
        return parse_quantity(raw, dim)
    except UnitError:
        raise _Fail(f"{what} (got {raw!r})", start) from None


def _is(raw: str, dim: Dimension) -> bool:
    try:
        parse_quantity(raw, dim)
    except UnitError:
        return False
    return True


def _read(sc: _Scanner, dim: Dimension, what: str) -> float:
    start = _pos(sc)
    raw = sc.quantity(what)
    value = _as(raw, dim, start, what)
    if value < 0 and dim in (Dimension.time, Dimension.flow, Dimension.temperature_rate):
        raise _Fail(f"{what} without a sign, got {raw!r}", start)
    return value


def _pos(sc: _Scanner) -> int:
    sc.ws()
    return sc.pos


def _setpoint(sc: _Scanner) -> dict[str, Any]:
    start = _pos(sc)
    what = "a current ('1C', 'C/20', '2 A', '1.6 mA', '190 mA/g', '1 mA/cm2')"
    raw = sc.quantity(what)
    if _is(raw, Dimension.power):
        raise _Fail(
            f"power setpoints ({raw!r}) are not supported; give a current", start, plain=True
        )
    if _is(raw, Dimension.resistance):
        raise _Fail(
            f"resistance setpoints ({raw!r}) are not supported; give a current",
            start,
            plain=True,
        )
    try:
        cv = parse_current(raw)
    except UnitError:
        raise _Fail(f"{what}, got {raw!r}", start) from None
    if cv.value < 0:
        raise _Fail("a current without a sign (Charge/Discharge gives the direction)", start)
    if cv.value == 0:
        raise _Fail("a non-zero current (use 'Rest' for zero current)", start)
    return {"value": cv.value, "basis": cv.basis}


# --------------------------------------------------------------------------- conditions


def _condition(sc: _Scanner, context: str) -> dict[str, Any]:
    """One condition; ``context`` is charge|discharge|cross and sets a bare voltage's op."""
    start = _pos(sc)
    if sc.kw("dV/dt"):
        op = sc.op() or _raise(_Fail("an operator (<, <=, >, >=) after dV/dt", _pos(sc)))
        v = _read(sc, Dimension.voltage_rate, "a voltage rate ('1 mV/h')")
        return {"quantity": "dvdt", "op": op, "value": v, "unit": "V/s"}
    if sc.kw("dT/dt"):
        op = sc.op() or _raise(_Fail("an operator (<, <=, >, >=) after dT/dt", _pos(sc)))
        v = _read(sc, Dimension.temperature_rate, "a temperature rate ('0.1 K/min')")
        return {"quantity": "dtdt", "op": op, "value": v, "unit": "K/s"}
    if sc.kw("T", "temperature"):
        op = sc.op() or _raise(_Fail("an operator (<, <=, >, >=) after T", _pos(sc)))
        v = _read(sc, Dimension.temperature, "a temperature ('40 °C')")
        return {"quantity": "temperature", "op": op, "value": v, "unit": "degC"}
    op = sc.op()
    qstart = _pos(sc)
    raw = sc.quantity(_COND_HINT)
    compact = raw.replace(" ", "")
    if compact.endswith("%"):
        value = float(compact[:-1]) / 100.0
        sc.kw("of nominal capacity", "of capacity", "capacity")
        return {"quantity": "capacity", "op": op or ">=", "value": value, "unit": "fraction"}
    if _C_RATE_RE.match(raw):
        cv = parse_current(raw)
        return {"quantity": "current", "op": op or "<=", "value": cv.value, "unit": "C"}
    for dim, quantity, unit, default in (
        (Dimension.voltage, "voltage", "V", None),
        (Dimension.current, "current", "A", "<="),
        (Dimension.specific_current, "current", "A/kg", "<="),
        (Dimension.time, "time", "s", ">="),
        (Dimension.charge, "capacity", "Ah", ">="),
        (Dimension.specific_charge, "capacity", "Ah/kg", ">="),
    ):
        try:
            value = parse_quantity(raw, dim)
        except UnitError:
            continue
        if quantity == "voltage":
            default = {"charge": ">=", "discharge": "<="}.get(context, "cross")
        if quantity == "capacity":
            sc.kw("capacity")
        if quantity in ("current", "time", "capacity") and value < 0:
            raise _Fail("a magnitude without a sign", qstart)
        return {"quantity": quantity, "op": op or default, "value": value, "unit": unit}
    if _is(raw, Dimension.temperature):
        raise _Fail(f"{_COND_HINT}; a temperature is written 'T > {raw}'", start)
    raise _Fail(f"{_COND_HINT}, got {raw!r}", qstart)


_C_RATE_RE = re.compile(rf"^\s*(?:{_NUMBER}\s*C|C\s*/\s*{_NUMBER})\s*$")


def _raise(exc: Exception) -> Any:
    raise exc


def _ends(sc: _Scanner, context: str) -> tuple[float | None, list[dict[str, Any]]]:
    """Read ``for``/``until``/``or`` clauses; bare time conditions fold into the duration."""
    durations: list[float] = []
    conds: list[dict[str, Any]] = []
    seen = False
    while True:
        if sc.kw("for"):
            durations.append(_read(sc, Dimension.time, "a time ('10 minutes', '1 h')"))
        elif sc.kw("until") or (not seen and context != "cross" and sc.kw("to")):
            # "Charge at 0.1C to 2.75 V": the papers' "to" is "until"
            conds.append(_condition(sc, context))
        elif seen and sc.kw("or"):
            if sc.kw("until"):
                conds.append(_condition(sc, context))
            elif sc.kw("for"):
                durations.append(_read(sc, Dimension.time, "a time ('10 minutes', '1 h')"))
            else:
                conds.append(_condition(sc, context))
        else:
            break
        seen = True
    keep: list[dict[str, Any]] = []
    for c in conds:
        if c["quantity"] == "time" and c["op"] in (">=", ">"):
            durations.append(c["value"])
        else:
            keep.append(c)
    return (min(durations) if durations else None), keep


def parse_conditions(text: str, context: str = "cross") -> list[dict[str, Any]]:
    """Parse ``"[until] cond {or [until] cond}"`` into Condition dicts.

    ``context`` ("charge", "discharge" or "cross") decides what a voltage without an
    operator means. Times stay time conditions here (``op '>='``).
    """
    if not isinstance(text, str):
        raise StepSyntaxError(f"{text!r} is not a condition")
    if len(text) > _MAX_TEXT:
        raise StepSyntaxError(f"a condition longer than {_MAX_TEXT} characters")
    sc = _Scanner(" ".join(text.split()))
    try:
        sc.kw("until")
        conds = [_condition(sc, context)]
        while sc.kw("or"):
            sc.kw("until")
            conds.append(_condition(sc, context))
        if not sc.at_end():
            raise _Fail("'or' or the end", sc.pos)
    except _Fail as f:
        raise StepSyntaxError(_fail_message(sc.text, f, "a condition")) from None
    return conds


# --------------------------------------------------------------------------- loop conditions

_LOOP_QUANTITIES = {
    "discharge capacity": "discharge_capacity",
    "charge capacity": "charge_capacity",
    "coulombic efficiency": "coulombic_efficiency",
    "coulomb efficiency": "coulombic_efficiency",
    "ce": "coulombic_efficiency",
    "mean discharge voltage": "mean_discharge_voltage",
    "capacity retention": "discharge_capacity",
}


def parse_loop_condition(text: str) -> dict[str, Any]:
    """Parse a loop-ending condition into a LoopCondition dict.

    Forms: ``discharge capacity < 80% of cycle 3``, ``discharge_capacity < 1.2 mAh``,
    ``coulombic efficiency < 99%``, ``mean discharge voltage < 3.2 V``.
    """
    if not isinstance(text, str):
        raise StepSyntaxError(f"{text!r} is not a loop condition")
    if len(text) > _MAX_TEXT:
        raise StepSyntaxError(f"a loop condition longer than {_MAX_TEXT} characters")
    norm = " ".join(text.replace("_", " ").split())
    sc = _Scanner(norm)
    try:
        name = sc.kw(*_LOOP_QUANTITIES)
        if name is None:
            raise _Fail(
                "discharge capacity|charge capacity|coulombic efficiency|mean discharge voltage",
                sc.pos,
            )
        quantity = _LOOP_QUANTITIES[name.lower()]
        op = sc.op()
        if op is None:
            raise _Fail("an operator (<, <=, >, >=)", _pos(sc))
        start = _pos(sc)
        raw = sc.quantity("a value ('80% of cycle 3', '1.2 mAh', '99%', '3.2 V')")
        out: dict[str, Any] = {"quantity": quantity, "op": op}
        compact = raw.replace(" ", "")
        if compact.endswith("%"):
            pct = float(compact[:-1]) / 100.0
            if sc.kw("of cycle"):
                m = re.compile(r"\d+").match(sc.text, _pos(sc))
                if m is None:
                    raise _Fail("a cycle number", _pos(sc))
                sc.pos = m.end()
                out["fraction"] = pct
                out["reference_cycle"] = int(m.group(0))
            elif quantity == "coulombic_efficiency":
                out["value"] = pct
            else:
                raise _Fail("'of cycle N' (which cycle the percentage is of)", sc.pos)
        elif quantity in ("discharge_capacity", "charge_capacity"):
            out["value"] = _as(raw, Dimension.charge, start, "a capacity ('1.2 mAh')")
        elif quantity == "mean_discharge_voltage":
            out["value"] = _as(raw, Dimension.voltage, start, "a voltage ('3.2 V')")
        else:
            raise _Fail(f"a percentage ('99%'), got {raw!r}", start)
        if not sc.at_end():
            raise _Fail("the end", sc.pos)
    except _Fail as f:
        raise StepSyntaxError(_fail_message(norm, f, "a loop condition")) from None
    return out

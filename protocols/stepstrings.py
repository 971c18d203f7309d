"""Step strings: one line of text per step, a superset of PyBaMM's experiment strings.

Grammar (case-insensitive keywords; units case-sensitive so ``mHz`` and ``MHz`` differ)::

    step       = electrical | rest | pulse | eis | thermal | gas , [period] ;
    electrical = ("Charge" | "Discharge") " at " setpoint ends [cv_tail]
               | "Hold at " voltage ends ;
    rest       = ("Rest" | "Measure OCV") ends ;
    ends       = { " for " time | [" or"] " until " cond | " or " cond } ;
    cv_tail    = [","] " then hold" [" at " voltage] ends ;        (* CC-CV as one step *)
    pulse      = ("Charge" | "Discharge") " pulse at " setpoint " for " time
                 [", rest " ["for "] time] [", repeat " (n " times" [" or until " conds]
                                                           | "until " conds)] ;
    eis        = "EIS from " freq " to " freq { [","] eis_part } ;
    eis_part   = n " per decade" | amplitude " amplitude" | "amplitude " amplitude
               | "at " ("OCV" | voltage | current) | "after " time " rest" ;
    thermal    = "Set temperature to " temp [" and wait until stable" [" within " K] [" for " time]]
               | ("Ramp" | "Heat") " furnace to " temp " at " rate
               | "Hold furnace" [" at " temp] " for " time
               | "Cool furnace to " temp [" at " rate | " naturally"] ;
    gas        = "Set gas " name " to " flow [" and wait " time] ;
    period     = [","] " every " q {" or " q} | " (" time " period)" ;  (* q: time, mV, mA *)
    cond       = [op] quantity | "dV/dt" op rate | "dT/dt" op rate | "T" op temp ;

Meaning of a condition without an operator (PyBaMM's traps fixed):

- a voltage ends a charge at ``>=``, a discharge at ``<=``, and a rest or hold when the
  voltage *crosses* it from wherever it started (``op='cross'``);
- a current (``C/50``, ``50 µA``) ends when ``|I| <= value`` (the tail of a CV hold);
- a capacity (``1.2 mAh``, ``150 mAh/g``, ``80% capacity``) ends when the charge passed
  in this step reaches it;
- a time (``2 h``) is the step's duration cap (the shortest wins).

Power and resistance setpoints ("Charge at 0.5 W") are not supported and say so.
Temperature is a field of the step (``temperature_degC``), never part of the string.
Errors are :class:`StepSyntaxError` (a ``ValueError``) naming the word where the text
stopped making sense and what was expected there.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .units import Dimension, UnitError, parse_current, parse_quantity

__all__ = [
    "StepSyntaxError",
    "parse_conditions",
    "parse_loop_condition",
    "parse_step",
]

_STEP_VERBS = (
    "Charge|Discharge|Rest|Hold at|Measure OCV|Charge pulse|Discharge pulse|EIS from|"
    "Set temperature|Ramp furnace|Hold furnace|Cool furnace|Set gas"
)
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
        elif sc.kw("until"):
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


# --------------------------------------------------------------------------- steps


def _period(sc: _Scanner, text: str) -> tuple[str, dict[str, Any] | None]:
    """Split a trailing record period off: ', every 10 s' or PyBaMM's '(1 minute period)'."""
    m = re.search(r"\s*\(\s*(?P<q>[^()]*?)\s+period\s*\)\s*$", text, re.IGNORECASE)
    if m is not None:
        sub = _Scanner(text)
        sub.pos = m.start("q")
        every = _read(sub, Dimension.time, "a record period ('1 minute period')")
        return text[: m.start()], {"every_s": every}
    m = re.search(r"(?:,\s*|\s+)every\s+(?P<q>.*)$", text, re.IGNORECASE)
    if m is None:
        return text, None
    sub = _Scanner(text)
    sub.pos = m.start("q")
    rule: dict[str, Any] = {}
    while True:
        start = _pos(sub)
        raw = sub.quantity("a record period ('10 s', '5 mV' or '1 mA')")
        for dim, key in (
            (Dimension.time, "every_s"),
            (Dimension.voltage, "dV_V"),
            (Dimension.current, "dI_A"),
        ):
            if _is(raw, dim):
                rule[key] = parse_quantity(raw, dim)
                break
        else:
            raise _Fail(f"a record period ('10 s', '5 mV' or '1 mA'), got {raw!r}", start)
        if not sub.kw("or"):
            break
    if not sub.at_end():
        raise _Fail("'or' or the end of the record period", sub.pos)
    return text[: m.start()], rule


def _electrical(sc: _Scanner, direction: str) -> dict[str, Any]:
    current = _setpoint(sc)
    duration, until = _ends(sc, direction)
    out: dict[str, Any] = {"step": "cc", "direction": direction, "current": current}
    if duration is not None:
        out["duration_s"] = duration
    out["until"] = until
    mark = sc.pos
    sc.comma()
    if sc.kw("then hold"):
        tail: dict[str, Any] = {}
        if sc.kw("at"):
            tail["voltage_V"] = _read(sc, Dimension.voltage, "a voltage ('4.2 V')")
        d2, u2 = _ends(sc, "cross")
        if d2 is None and not u2:
            raise _Fail("'for' a time or 'until' a current after 'then hold'", sc.pos)
        if d2 is not None:
            tail["duration_s"] = d2
        tail["until"] = u2
        out["cv"] = tail
    else:
        sc.pos = mark
    if duration is None and not until:
        raise _Fail("'for' a time or 'until' a condition", sc.pos)
    return out


def _pulse(sc: _Scanner, direction: str) -> dict[str, Any]:
    current = _setpoint(sc)
    sc.expect("'for' and the pulse length", "for")
    pulse_s = _read(sc, Dimension.time, "a pulse length ('10 min')")
    out: dict[str, Any] = {
        "step": "pulse",
        "direction": direction,
        "current": current,
        "pulse_s": pulse_s,
    }
    mark = sc.pos
    if (sc.comma() or True) and sc.kw("rest", "then rest"):
        sc.kw("for")
        out["rest_s"] = _read(sc, Dimension.time, "a rest length ('1 h')")
    else:
        sc.pos = mark
    mark = sc.pos
    if (sc.comma() or True) and sc.kw("repeat"):
        if sc.kw("until"):
            out["until"] = _pulse_conds(sc, direction)
        else:
            start = _pos(sc)
            m = re.compile(r"\d+").match(sc.text, sc.pos)
            if m is None:
                raise _Fail("a count ('20 times') or 'until' a condition after 'repeat'", start)
            sc.pos = m.end()
            out["repeat"] = int(m.group(0))
            sc.expect("'times'", "times", "x")
            if sc.kw("or until", "or"):
                out["until"] = _pulse_conds(sc, direction)
    else:
        sc.pos = mark
        out["repeat"] = 1
    return out


def _pulse_conds(sc: _Scanner, direction: str) -> list[dict[str, Any]]:
    conds = [_condition(sc, direction)]
    while sc.kw("or"):
        sc.kw("until")
        conds.append(_condition(sc, direction))
    return conds


def _eis(sc: _Scanner) -> dict[str, Any]:
    out: dict[str, Any] = {"step": "eis"}
    out["f_start_Hz"] = _read(sc, Dimension.frequency, "a frequency ('7 MHz')")
    sc.expect("'to'", "to")
    out["f_end_Hz"] = _read(sc, Dimension.frequency, "a frequency ('10 mHz')")
    hint = "'N per decade', 'X mV amplitude', 'at OCV' or 'after 10 min rest'"
    while True:
        sc.comma()
        if sc.at_end():
            break
        start = sc.pos
        if sc.kw("at"):
            if sc.kw("OCV", "open circuit"):
                out["bias"] = "ocv"
                continue
            bstart = _pos(sc)
            raw = sc.quantity("'OCV', a voltage or a current")
            if _is(raw, Dimension.voltage):
                out["bias"], out["bias_V"] = "voltage", parse_quantity(raw, Dimension.voltage)
            elif _is(raw, Dimension.current):
                out["bias"], out["bias_A"] = "current", parse_quantity(raw, Dimension.current)
            else:
                raise _Fail(f"'OCV', a voltage or a current, got {raw!r}", bstart)
            continue
        if sc.kw("after"):
            out["rest_before_s"] = _read(sc, Dimension.time, "a rest time ('10 min')")
            sc.expect("'rest'", "rest")
            continue
        if sc.kw("amplitude"):
            _amplitude(sc, out)
            continue
        m = re.compile(rf"({_NUMBER})\s+(?:points\s+)?per\s+decade\b", re.I).match(sc.text, start)
        if m is not None:
            out["points_per_decade"] = float(m.group(1))
            sc.pos = m.end()
            continue
        if re.compile(_NUMBER).match(sc.text, start):
            _amplitude(sc, out)
            sc.expect("'amplitude'", "amplitude")
            continue
        raise _Fail(hint, start)
    if "amplitude_V" not in out and "amplitude_A" not in out:
        raise _Fail("an amplitude ('10 mV amplitude' or '10 µA amplitude')", sc.pos)
    return out


def _amplitude(sc: _Scanner, out: dict[str, Any]) -> None:
    start = _pos(sc)
    raw = sc.quantity("an amplitude ('10 mV' or '10 µA')")
    if _is(raw, Dimension.voltage):
        out["amplitude_V"] = parse_quantity(raw, Dimension.voltage)
    elif _is(raw, Dimension.current):
        out["amplitude_A"] = parse_quantity(raw, Dimension.current)
    else:
        raise _Fail(f"an amplitude in V (PEIS) or A (GEIS), got {raw!r}", start)


def _chamber(sc: _Scanner) -> dict[str, Any]:
    out: dict[str, Any] = {"step": "chamber"}
    out["setpoint_C"] = _read(sc, Dimension.temperature, "a temperature ('45 °C')")
    if sc.kw("and wait until stable", "and wait"):
        wait: dict[str, Any] = {}
        while True:
            if sc.kw("within"):
                start = _pos(sc)
                raw = sc.quantity("a tolerance ('0.5 K')")
                wait["tolerance_K"] = _kelvin_delta(raw, start)
            elif sc.kw("for"):
                wait["hold_s"] = _read(sc, Dimension.time, "a time ('10 min')")
            else:
                break
        out["wait"] = wait
    else:
        out["wait"] = None
    return out


def _kelvin_delta(raw: str, start: int) -> float:
    """A temperature difference: '0.5 K' or '0.5 °C' (both 0.5 kelvin of difference)."""
    m = re.fullmatch(rf"({_NUMBER})\s*(K|°C|degC|℃)", raw)
    if m is None:
        raise _Fail(f"a tolerance in K ('0.5 K'), got {raw!r}", start)
    return float(m.group(1))


def _furnace(sc: _Scanner, verb: str) -> dict[str, Any]:
    out: dict[str, Any] = {"step": "furnace"}
    if verb == "hold":
        out["action"] = "dwell"
        if sc.kw("at"):
            out["target_C"] = _read(sc, Dimension.temperature, "a temperature ('400 °C')")
        sc.expect("'for' and a time", "for")
        out["duration_s"] = _read(sc, Dimension.time, "a time ('1 h')")
        return out
    sc.expect("'to'", "to")
    out["target_C"] = _read(sc, Dimension.temperature, "a temperature ('400 °C')")
    if verb == "ramp":
        out["action"] = "ramp"
        sc.expect("'at' and a rate ('2 K/min')", "at")
        out["rate_K_per_s"] = _read(sc, Dimension.temperature_rate, "a rate ('2 K/min')")
    else:
        out["action"] = "cool"
        if sc.kw("at"):
            out["rate_K_per_s"] = _read(sc, Dimension.temperature_rate, "a rate ('5 °C/min')")
        else:
            sc.kw("naturally")
    return out


def _gas(sc: _Scanner) -> dict[str, Any]:
    start = _pos(sc)
    name = sc.word()
    if name.lower() == "to":
        raise _Fail("a gas line name ('N2', 'O2')", start)
    sc.expect("'to' and a flow ('118.5 sccm')", "to")
    flow = _read(sc, Dimension.flow, "a flow ('118.5 sccm')")
    out: dict[str, Any] = {"step": "gas", "line": name, "flow_sccm": flow}
    if sc.kw("and wait"):
        sc.kw("for")
        out["wait_s"] = _read(sc, Dimension.time, "a time ('5 min')")
    return out


def _dispatch(sc: _Scanner) -> dict[str, Any]:
    verb = sc.kw(
        "Charge pulse at",
        "Discharge pulse at",
        "Charge at",
        "Discharge at",
        "Hold furnace",
        "Hold at",
        "Measure OCV",
        "Rest",
        "EIS from",
        "Set temperature to",
        "Set gas",
        "Ramp furnace",
        "Heat furnace",
        "Cool furnace",
        "Pulse at",
    )
    if verb is None:
        raise _Fail(_STEP_VERBS, sc.pos)
    v = verb.lower()
    if v == "pulse at":
        raise _Fail("'Charge pulse at' or 'Discharge pulse at' (say which way)", 0)
    if v in ("charge pulse at", "discharge pulse at"):
        return _pulse(sc, v.split()[0])
    if v in ("charge at", "discharge at"):
        return _electrical(sc, v.split()[0])
    if v == "hold at":
        volt = _read(sc, Dimension.voltage, "a voltage ('4.2 V')")
        duration, until = _ends(sc, "cross")
        if duration is None and not until:
            raise _Fail("'for' a time or 'until' a current ('until C/50')", sc.pos)
        out: dict[str, Any] = {"step": "cv", "voltage_V": volt, "until": until}
        if duration is not None:
            out["duration_s"] = duration
        return out
    if v in ("rest", "measure ocv"):
        duration, until = _ends(sc, "cross")
        if duration is None and not until:
            raise _Fail("'for' a time or 'until' a condition", sc.pos)
        out = {"step": "rest", "until": until, "measure_ocv": v == "measure ocv"}
        if duration is not None:
            out["duration_s"] = duration
        return out
    if v == "eis from":
        return _eis(sc)
    if v == "set temperature to":
        return _chamber(sc)
    if v == "set gas":
        return _gas(sc)
    if v in ("ramp furnace", "heat furnace"):
        return _furnace(sc, "ramp")
    if v == "cool furnace":
        return _furnace(sc, "cool")
    return _furnace(sc, "hold")


def parse_step(text: str) -> dict[str, Any]:
    """Parse one step string into a dict that validates into a step model.

    The dict carries ``step`` (rest, cc, cv, pulse, eis, chamber, furnace, gas) and
    ``text`` (the original string). Raises :class:`StepSyntaxError` on anything else.

    >>> parse_step("Discharge at 1C until 2.5 V")["until"][0]["op"]
    '<='
    """
    if not isinstance(text, str):
        raise StepSyntaxError(f"{text!r} is not a step string")
    if len(text) > _MAX_TEXT:
        raise StepSyntaxError(f"a step string longer than {_MAX_TEXT} characters")
    result = _parse_step_cached(" ".join(text.split()))
    if isinstance(result, str):
        raise StepSyntaxError(result)
    out: dict[str, Any] = _copy(result)
    out["text"] = text
    return out


def _copy(value: Any) -> Any:
    # Callers may mutate what they get; the cached original must stay as parsed.
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@lru_cache(maxsize=4096)
def _parse_step_cached(norm: str) -> dict[str, Any] | str:
    """The parsed step, or the error message. Protocols repeat their strings a lot."""
    if not norm:
        return f"an empty string is not a step: expected {_STEP_VERBS}"
    sc = _Scanner(norm)
    try:
        body, record = _period(sc, norm)
        sc = _Scanner(body)
        out = _dispatch(sc)
        if not sc.at_end():
            _trailing(sc, out)
    except _Fail as f:
        return _fail_message(norm, f)
    if record is not None:
        out["record"] = record
    return out


def _trailing(sc: _Scanner, out: dict[str, Any]) -> None:
    """Explain leftover words: PyBaMM's in-string temperature, or what could follow."""
    rest = sc.text[sc.pos :]
    if re.match(rf"\s*at\s+{_NUMBER}\s*(?:°C|oC|degC|℃|K)\b", rest):
        raise _Fail(
            "temperature is a field of the step (temperature_degC), not part of the string",
            sc.pos,
            plain=True,
        )
    expected = {
        "cc": "'for', 'until', 'or', 'then hold', 'every' or the end",
        "cv": "'for', 'until', 'or', 'every' or the end",
        "rest": "'for', 'until', 'or', 'every' or the end",
        "pulse": "', rest 1 h', ', repeat N times', ', repeat until ...' or the end",
    }.get(str(out.get("step")), "the end")
    raise _Fail(expected, sc.pos)


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

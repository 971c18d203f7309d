"""Step strings: one line of text per step, a superset of PyBaMM's experiment strings.

Grammar (case-insensitive keywords; units case-sensitive so ``mHz`` and ``MHz`` differ)::

    step       = electrical | rest | pulse | eis | thermal | gas , [period] ;
    electrical = ("Charge" | "Discharge") " at " setpoint ends [cv_tail]
               | "Hold at " voltage ends ;
    rest       = ("Rest" | "Measure OCV") [" at OCV"] ends [" at OCV"] ;
    ends       = { " for " time | [" or"] " until " cond | " or " cond } ;
                 (* after Charge/Discharge at, a first " to " cond means " until " *)
    cv_tail    = [","] " then hold" [" at " voltage] ends ;        (* CC-CV as one step *)
    pulse      = ("Charge" | "Discharge") " pulse at " setpoint " for " time
                 [", rest " ["for "] time] [", repeat " (n " times" [" or until " conds]
                                                           | "until " conds)] ;
    eis        = ("EIS" | "PEIS" | "GEIS") " from " freq " to " freq { [","] ["with"] eis_part } ;
                 (* PEIS: amplitude in V; GEIS: in A; EIS: either *)
    eis_part   = n " per decade" | amplitude " amplitude" | "amplitude " amplitude
               | "at " ("OCV" | voltage | current) | "after " time " rest" ;
    thermal    = "Set temperature to " temp [" and wait until stable" [" within " K] [" for " time]]
               | ("Ramp" | "Heat") " furnace to " temp " at " rate
               | ("Hold furnace" | "Dwell") [" at " temp] " for " time
               | "Cool furnace to " (temp [" at " rate | " naturally"] | "room temperature") ;
                 (* room temperature: 25 °C, done within 15 K *)
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

Power and resistance setpoints ("Charge at 0.5 W") are not supported and say so; so do
"Hold at 500 °C" (a dwell), "Heat to 500 °C" (name the furnace) and a PEIS with a current
amplitude, each naming the form that is accepted.
Temperature is a field of the step (``temperature_degC``), never part of the string.
Errors are :class:`StepSyntaxError` (a ``ValueError``) naming the word where the text
stopped making sense and what was expected there.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .stepscan import (
    _MAX_TEXT,
    _NUMBER,
    StepSyntaxError,
    _condition,
    _ends,
    _Fail,
    _fail_message,
    _is,
    _pos,
    _read,
    _Scanner,
    _setpoint,
    parse_conditions,
    parse_loop_condition,
)
from .units import Dimension, parse_quantity

__all__ = [
    "StepSyntaxError",
    "parse_conditions",
    "parse_loop_condition",
    "parse_step",
]

_STEP_VERBS = (
    "Charge|Discharge|Rest|Hold at|Measure OCV|Charge pulse|Discharge pulse|EIS from|"
    "PEIS from|GEIS from|Set temperature|Ramp furnace|Heat furnace|Hold furnace|Dwell|"
    "Cool furnace|Set gas"
)
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


def _eis(sc: _Scanner, mode: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"step": "eis"}
    out["f_start_Hz"] = _read(sc, Dimension.frequency, "a frequency ('7 MHz')")
    sc.expect("'to'", "to")
    out["f_end_Hz"] = _read(sc, Dimension.frequency, "a frequency ('10 mHz')")
    hint = "'N per decade', 'X mV amplitude', 'at OCV' or 'after 10 min rest'"
    while True:
        sc.comma()
        sc.kw("with", "and")
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
    if mode == "PEIS" and "amplitude_A" in out:
        raise _Fail("PEIS takes a voltage amplitude ('10 mV amplitude'); for a current "
                    "amplitude write GEIS", 0, plain=True)  # fmt: skip
    if mode == "GEIS" and "amplitude_V" in out:
        raise _Fail("GEIS takes a current amplitude ('10 µA amplitude'); for a voltage "
                    "amplitude write PEIS", 0, plain=True)  # fmt: skip
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


#: "Cool furnace to room temperature": 25 °C, done within 15 K (below 40 °C, as the
#: library's anneals end); natural cooling never quite reaches the room itself.
ROOM_C = 25.0
ROOM_TOLERANCE_K = 15.0


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
    if verb == "cool" and sc.kw("room temperature", "ambient", "RT"):
        # natural cooling until the sample can be taken out: below 40 °C
        out.update(target_C=ROOM_C, tolerance_K=ROOM_TOLERANCE_K, action="cool")
        return out
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


def _not_a_temperature(sc: _Scanner) -> None:
    """'Hold at 500 °C for 30 min' is a furnace dwell, not a voltage hold: say so."""
    mark = _pos(sc)
    try:
        raw = sc.quantity("a voltage")
    except _Fail:
        return
    finally:
        sc.pos = mark
    if _is(raw, Dimension.temperature):
        rest = sc.text[mark:].strip()
        raise _Fail(f"'Hold at' holds a voltage; a furnace dwell is written 'Dwell at {rest}' "
                    f"or 'Hold furnace at {rest}'", mark, plain=True)  # fmt: skip


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
        "Dwell",
        "PEIS from",
        "GEIS from",
        "Heat to",
        "Ramp to",
        "Cool to",
        "Cool down to",
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
        _not_a_temperature(sc)
        volt = _read(sc, Dimension.voltage, "a voltage ('4.2 V')")
        duration, until = _ends(sc, "cross")
        if duration is None and not until:
            raise _Fail("'for' a time or 'until' a current ('until C/50')", sc.pos)
        out: dict[str, Any] = {"step": "cv", "voltage_V": volt, "until": until}
        if duration is not None:
            out["duration_s"] = duration
        return out
    if v in ("rest", "measure ocv"):
        ocv = ("at OCV", "at open circuit", "at open-circuit")
        sc.kw(*ocv)  # "Rest at OCV for 10 h": a rest is at open circuit
        duration, until = _ends(sc, "cross")
        sc.kw(*ocv)
        if duration is None and not until:
            raise _Fail("'for' a time or 'until' a condition", sc.pos)
        out = {"step": "rest", "until": until, "measure_ocv": v == "measure ocv"}
        if duration is not None:
            out["duration_s"] = duration
        return out
    if v in ("eis from", "peis from", "geis from"):
        return _eis(sc, verb.split()[0].upper())
    if v == "dwell":
        return _furnace(sc, "hold")
    if v in ("heat to", "ramp to", "cool to", "cool down to"):
        word = verb.split()[0].capitalize()
        raise _Fail(f"a furnace step names the furnace: write '{word} furnace to "
                    f"{sc.text[sc.pos:].strip()}'", 0, plain=True)  # fmt: skip
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

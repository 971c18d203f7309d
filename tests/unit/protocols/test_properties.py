"""Property-based tests: unit parsing round trips and never fails in unexpected ways."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from labrig.protocols import Dimension, ProtocolError, Step, UnitError, parse_quantity, parse_step
from labrig.protocols.models import Checkpoint
from labrig.protocols.stepstrings import parse_conditions, parse_loop_condition

STEP: TypeAdapter[Any] = TypeAdapter(Step)
PREFIXES = {"n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6}
BASE = {Dimension.voltage: "V", Dimension.current: "A", Dimension.frequency: "Hz"}
TIME_UNITS = {"s": 1.0, "min": 60.0, "minutes": 60.0, "m": 60.0, "h": 3600.0, "hours": 3600.0}

values = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(value=values, prefix=st.sampled_from(sorted(PREFIXES)), dim=st.sampled_from(sorted(BASE)))
def test_prefixed_values_round_trip(value: float, prefix: str, dim: Dimension) -> None:
    text = f"{value!r} {prefix}{BASE[dim]}"
    assert parse_quantity(text, dim) == pytest.approx(value * PREFIXES[prefix], rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(value=values, unit=st.sampled_from(sorted(TIME_UNITS)))
def test_times_round_trip(value: float, unit: str) -> None:
    assert parse_quantity(f"{value!r} {unit}", Dimension.time) == pytest.approx(
        value * TIME_UNITS[unit], rel=1e-12
    )


WRONG = {
    Dimension.voltage: ["A", "mA", "s", "Hz", "sccm", "K/min", "mAh"],
    Dimension.current: ["V", "mV", "h", "kHz", "°C", "Ohm"],
    Dimension.time: ["V", "A", "MHz", "sccm", "mAh/g"],
    Dimension.temperature: ["V", "s", "K/min", "A"],
    Dimension.frequency: ["s", "V", "mA"],
}


@settings(max_examples=150, deadline=None)
@given(
    value=values,
    pair=st.sampled_from([(d, u) for d, us in WRONG.items() for u in us]),
)
def test_dimension_mismatch_raises_unit_error(value: float, pair: tuple[Dimension, str]) -> None:
    dim, unit = pair
    with pytest.raises(UnitError):
        parse_quantity(f"{value!r} {unit}", dim)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40), dim=st.sampled_from(list(Dimension)))
def test_arbitrary_quantity_text_raises_only_unit_error(text: str, dim: Dimension) -> None:
    try:
        value = parse_quantity(text, dim)
    except UnitError:
        return
    assert math.isfinite(value)


@settings(max_examples=200, deadline=None)
@given(
    number=st.floats(allow_nan=False),
    unit=st.from_regex(r"[a-zA-Zµ°/*^0-9()]{0,12}", fullmatch=True),
)
def test_number_with_any_unit_raises_only_unit_error(number: float, unit: str) -> None:
    with contextlib.suppress(UnitError):
        parse_quantity(f"{number!r} {unit}", Dimension.voltage)


WORDS = [
    "Charge",
    "Discharge",
    "at",
    "1C",
    "C/20",
    "0.1",
    "C",
    "until",
    "or",
    "for",
    "3.7",
    "V",
    "2",
    "h",
    "Rest",
    "Hold",
    "EIS",
    "from",
    "to",
    "MHz",
    "mHz",
    "amplitude",
    "mV",
    "per",
    "decade",
    "every",
    "10",
    "s",
    "then",
    "hold",
    "pulse",
    "repeat",
    "times",
    ",",
    "%",
    "dV/dt",
    "<",
    ">=",
    "T",
    "°C",
    "Set",
    "temperature",
    "gas",
    "N2",
    "sccm",
    "furnace",
    "Ramp",
    "Cool",
    "K/min",
    "mA",
    "µA",
    "Measure",
    "OCV",
    "(",
    ")",
    "period",
    "-1",
    "1e999",
]


@settings(max_examples=400, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), max_size=14))
def test_step_parser_word_soup_raises_only_value_errors(words: list[str]) -> None:
    text = " ".join(words)
    for parse in (parse_conditions, parse_loop_condition):
        with contextlib.suppress(ValueError, ProtocolError):
            parse(text)
    try:
        data = parse_step(text)
    except ValueError:
        return
    # What parses either validates into a step or fails validation (a ValueError).
    with contextlib.suppress(ValueError):
        STEP.validate_python(data)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80))
def test_step_parser_arbitrary_text_raises_only_value_errors(text: str) -> None:
    for parse in (parse_step, parse_conditions, parse_loop_condition):
        with contextlib.suppress(ValueError, ProtocolError):
            parse(text)


@settings(max_examples=200, deadline=None)
@given(
    every=st.one_of(st.none(), st.integers(1, 60)),
    at=st.lists(st.integers(1, 400), max_size=6),
    n=st.integers(0, 400),
)
def test_a_checkpoint_fires_within_a_loop_as_often_as_at_each_iteration(
    every: int | None, at: list[int], n: int
) -> None:
    """Counted at once (the run's step total, the duration estimate), a checkpoint fires
    as often as asked iteration by iteration, an iteration named twice counting once."""
    if every is None and not at:
        at = [1]
    cp = Checkpoint.model_validate({"every": every, "at": at, "steps": ["rest for 1 min"]})
    assert cp.fires_within(n) == sum(cp.fires_at(i) for i in range(1, n + 1))

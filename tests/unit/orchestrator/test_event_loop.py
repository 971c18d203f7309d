"""The real-time event loop: uvloop where installed, asyncio's own when asked, and a
clear error for a name that is neither."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import pytest

from labrig.orchestrator.clock import (
    EVENT_LOOP_ENV,
    LONG_RUN_GC_THRESHOLDS,
    EventLoopChoiceError,
    long_run_collector,
    real_time_loop_factory,
    run_real_time,
)


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_the_default_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert real_time_loop_factory() is uvloop.new_event_loop
    assert run_real_time(_loop_module()).startswith("uvloop")


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert real_time_loop_factory() is asyncio.new_event_loop
    assert run_real_time(_loop_module()).startswith("asyncio")


def test_an_unknown_loop_is_a_clear_error_and_the_coroutine_is_not_left_unawaited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    with pytest.raises(EventLoopChoiceError, match="LABRIG_EVENT_LOOP='trio'"):
        run_real_time(_loop_module())  # warnings are errors: an unawaited one would fail


def test_uvloop_asked_for_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import fails as if not installed
    with pytest.raises(EventLoopChoiceError, match="not installed"):
        real_time_loop_factory()


def test_labrig_run_with_an_unknown_loop_exits_2_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from labrig.orchestrator.cli import app

    station = tmp_path / "station.yaml"
    station.write_text(
        "name: lab\n"
        "instruments:\n"
        "  cycler: {driver: maccor, address: 'tcp://127.0.0.1:1', channels: 8}\n"
        "positions:\n"
        "  - {name: A1, cycler: cycler/0}\n"
    )
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["run", "rate_test", "--station", str(station), "--out", str(out), "-q"]
    )
    assert result.exit_code == 2, result.output
    assert "LABRIG_EVENT_LOOP='trio'" in result.output and "Traceback" not in result.output
    assert not list(out.glob("*/run.json"))


async def _thresholds() -> tuple[int, ...]:
    return gc.get_threshold()


def test_real_time_runs_collect_garbage_less_often_and_put_the_thresholds_back() -> None:
    before = gc.get_threshold()
    assert before != LONG_RUN_GC_THRESHOLDS
    assert run_real_time(_thresholds()) == LONG_RUN_GC_THRESHOLDS
    assert gc.get_threshold() == before


def test_the_collector_thresholds_survive_overlapping_users_on_two_threads() -> None:
    """The MQTT publisher's thread runs its own real-time loop inside the run's: the
    first out must not put the defaults back under the one still running."""
    before = gc.get_threshold()
    inside, leave = threading.Event(), threading.Event()
    seen: list[tuple[int, ...]] = []

    def other() -> None:
        with long_run_collector():
            inside.set()
            leave.wait(10)
            seen.append(gc.get_threshold())

    t = threading.Thread(target=other)
    with long_run_collector():
        t.start()
        assert inside.wait(10)
    # this thread is out; the other is still in
    assert gc.get_threshold() == LONG_RUN_GC_THRESHOLDS
    leave.set()
    t.join(10)
    assert seen == [LONG_RUN_GC_THRESHOLDS]
    assert gc.get_threshold() == before

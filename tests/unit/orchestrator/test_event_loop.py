"""The real-time event loop: uvloop where installed, asyncio's own when asked, and a
clear error for a name that is neither."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labrig.orchestrator.clock import (
    EVENT_LOOP_ENV,
    EventLoopChoiceError,
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

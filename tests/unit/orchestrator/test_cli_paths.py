"""No traceback from what a user types: output directories that cannot take a run
directory, runs directories that are files, station files that are not text, and a
station whose instrument nobody answers for."""

from __future__ import annotations

import errno
import json
import socket
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app

runner = CliRunner()


def _no_traceback(result: object) -> None:
    exc = getattr(result, "exception", None)
    assert exc is None or isinstance(exc, SystemExit), repr(exc)


@pytest.mark.parametrize("where", ["file", "/dev/null", "/proc", "/proc/sys/labrig"])
def test_run_refuses_an_out_that_cannot_take_a_run_directory(tmp_path: Path, where: str) -> None:
    out = tmp_path / "a-file" if where == "file" else Path(where)
    if where == "file":
        out.write_text("x")
    result = runner.invoke(app, ["run", "--sim", "-q", "benchmark_short", "--out", str(out)])
    _no_traceback(result)
    assert result.exit_code == 2
    assert f"--out {out}" in result.stderr
    if where == "file":
        assert out.read_text() == "x"


def test_run_refuses_an_out_on_a_read_only_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    out = tmp_path / "ro"
    result = runner.invoke(app, ["run", "--sim", "-q", "benchmark_short", "--out", str(out)])
    _no_traceback(result)
    assert result.exit_code == 2
    assert "Read-only file system" in result.stderr
    assert list(out.iterdir()) == []  # no run directory, not even half of one


def test_import_refuses_an_out_that_is_not_a_directory(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    data.write_text("a,b\n")
    result = runner.invoke(app, ["import", str(data), "--out", "/dev/null"])
    _no_traceback(result)
    assert result.exit_code == 2 and "--out /dev/null is not a directory" in result.stderr


@pytest.mark.parametrize("command", [["ls"], ["logs", "x"], ["serve", "--sim"]])
def test_runs_that_is_a_file_is_refused(tmp_path: Path, command: list[str]) -> None:
    runs = tmp_path / "runs"
    runs.write_text("")
    result = runner.invoke(app, [*command, "--runs", str(runs)], env={"COLUMNS": "400"})
    _no_traceback(result)
    said = " ".join(result.output.replace("│", " ").split())  # the error panel, unwrapped
    assert result.exit_code == 2 and f"{runs} is not a directory" in said


def test_a_station_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    station = tmp_path / "station.yaml"
    station.write_bytes(b"\xff\xfe\x00")
    result = runner.invoke(app, ["validate", "rate_test", "--station", str(station)])
    _no_traceback(result)
    assert result.exit_code == 2 and "not UTF-8 text" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_instrument_nobody_answers_for_leaves_no_run_running(tmp_path: Path) -> None:
    station = tmp_path / "station.yaml"
    station.write_text(
        "name: s\n"
        f"instruments: {{c: {{driver: maccor, address: 'tcp://127.0.0.1:{_free_port()}'}}}}\n"
        "positions: [{name: p, cycler: c/0}]\n"
    )
    out = tmp_path / "runs"
    args = ["run", "rate_test", "--station", str(station), "-q", "--out", str(out)]
    result = runner.invoke(app, args)
    _no_traceback(result)
    assert result.exit_code != 0 and "cannot connect" in result.stderr
    for run in out.iterdir() if out.exists() else ():
        assert json.loads((run / "run.json").read_text())["state"] != "running"


def test_sim_serve_refuses_a_port_out_of_range() -> None:
    result = runner.invoke(app, ["sim", "serve", "maccor", "--port", "70000"])
    _no_traceback(result)
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "command", [["run", "--sim", "-q", "--out"], ["submit", "--runs"]], ids=["run", "submit"]
)
def test_a_negative_seed_is_refused(command: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, [*command, str(tmp_path), "rate_test", "--seed", "-5"])
    _no_traceback(result)
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "command",
    [["serve", "--sim"], ["agent", "--station", "s.yaml", "--lab", "postgresql://x@127.0.0.1:1/x"]],
    ids=["serve", "agent"],
)
@pytest.mark.parametrize("runs", ["/proc/labrig-runs", "/sys"])
def test_a_runs_directory_that_cannot_be_written_is_refused(command: list[str], runs: str) -> None:
    result = runner.invoke(app, [*command, "--runs", runs])
    _no_traceback(result)
    assert result.exit_code == 2 and f"--runs {runs}: cannot create" in result.stderr

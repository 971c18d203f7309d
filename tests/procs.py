"""Real processes for the slow tests and the fault benchmarks.

A simulator in its own process (``labrig sim serve``), ``labrig`` commands as
subprocesses, and waits for the states they reach: a run directory, a state in its
``run.json``, events of its own. Waits are for states; their deadlines only bound a
test that would otherwise hang.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LABRIG = [sys.executable, "-m", "labrig.orchestrator.cli"]
FINAL = ("finished", "aborted", "failed")


def first_line(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    """The first line ``proc`` writes to its stdout, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise AssertionError(f"no line from {proc.args!r} within {timeout_s} s")
    return proc.stdout.readline().strip()


@contextmanager
def simulator(name: str, *, speed: float | None = None, args: tuple[str, ...] = ()
              ) -> Iterator[str]:  # fmt: skip
    """``labrig sim serve NAME`` in its own process; yields its ``tcp://`` address and
    stops it (SIGINT) on the way out."""
    extra = [*args, *(["--speed", str(speed)] if speed is not None else [])]
    proc = subprocess.Popen(
        [*LABRIG, "sim", "serve", name, "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = first_line(proc)
        if not address.startswith("tcp://"):
            raise AssertionError(f"simulator {name} did not start: {address!r}")
        yield address
    finally:
        stop(proc, signal.SIGINT, timeout_s=10)
        if proc.stdout is not None:
            proc.stdout.close()


def start(args: list[str], *, output: bool = False, log: Path | None = None
          ) -> subprocess.Popen[str]:  # fmt: skip
    """``labrig ARGS`` as a subprocess. ``output``: its stdout and stderr are kept for
    ``communicate``; ``log``: its stderr is appended there; else both are discarded."""
    if log is not None:
        with open(log, "ab") as f:
            return subprocess.Popen([*LABRIG, *args], stdout=subprocess.DEVNULL, stderr=f,
                                    text=True)  # fmt: skip
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen([*LABRIG, *args], stdout=pipe, stderr=pipe, text=True)


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM,
         timeout_s: float = 90.0) -> int:  # fmt: skip
    """Send ``sig`` and wait for the process to end; killed when it outstays
    ``timeout_s``. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return kill(proc)


def kill(proc: subprocess.Popen[str]) -> int:
    """SIGKILL (no clean-up of any kind) and reap."""
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


def wait_until(pred: Callable[[], bool], timeout_s: float = 60.0, *,
               proc: subprocess.Popen[str] | None = None) -> bool:  # fmt: skip
    """Poll ``pred`` until it holds (True); False when ``proc`` ended first or the
    deadline passed."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            return pred()
        time.sleep(0.05)
    return True


def handlers_installed(proc: subprocess.Popen[str]) -> bool:
    """labrig's first line has run: it catches SIGTERM from then on (before, the
    interpreter is starting and a signal ends it the default way). True once it ended."""
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except OSError:
        return True
    mask = next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1]
    return proc.poll() is not None or bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


def run_dir(out: Path) -> Path | None:
    """The one run directory under ``out`` (None before there is exactly one)."""
    runs = list(out.iterdir()) if out.exists() else []
    return runs[0] if len(runs) == 1 else None


def run_meta(root: Path | None) -> dict[str, Any]:
    """``run.json`` of a run directory; {} while there is none (or it is being replaced)."""
    if root is None:
        return {}
    try:
        meta: dict[str, Any] = json.loads((root / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta


def event_count(root: Path | None) -> int:
    """How many events a run directory's journal holds."""
    path = None if root is None else root / "events.jsonl"
    return path.read_bytes().count(b"\n") if path is not None and path.exists() else 0


def events(root: Path) -> list[dict[str, Any]]:
    """A run directory's events, in order."""
    return [json.loads(x) for x in (root / "events.jsonl").read_text().splitlines()]


def maccor_station(folder: Path, address: str, channel: int = 0) -> Path:
    """``station.yaml`` with one position, A1, on channel ``channel`` of a MACCOR."""
    path = folder / "station.yaml"
    path.write_text(
        "name: lab\n"
        f"instruments:\n  cycler: {{driver: maccor, address: '{address}', channels: 8}}\n"
        f"positions:\n  - {{name: A1, cycler: cycler/{channel}}}\n"
    )
    return path


def furnace_station(folder: Path, address: str) -> Path:
    """``station.yaml`` with one furnace position, tube1, on a Eurotherm."""
    path = folder / "station.yaml"
    path.write_text(
        "name: lab\n"
        f"instruments:\n  furnace: {{driver: eurotherm, address: '{address}'}}\n"
        "positions:\n  - {name: tube1, kind: furnace, furnace: furnace}\n"
    )
    return path


# ---------------------------------------------------------------------- signals
SIGNAL_PROTOCOL = """\
name: signal drill
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190}
limits: {voltage_V: [2.0, 3.8], current_abs_mA: 10}
defaults: {record: {every_s: 30}}
sequence:
  - label: aging
    repeat: 200
    steps: [Charge at 1C until 3.68 V, Rest for 10 min, Discharge at 1C until 2.28 V]
"""

#: the states a signal drill waits for before its seeded delay, by name: ``loading``
#: (labrig's first line ran), ``run.json`` (the run directory is written), ``first step``
#: (the run journalled its start and its first step)
SIGNAL_STAGES: dict[str, Callable[[Path], bool]] = {
    "loading": lambda out: True,
    "run.json": lambda out: bool(run_meta(run_dir(out))),
    "first step": lambda out: event_count(run_dir(out)) >= 2,
}


def maccor_channel_state(address: str, number: int = 0) -> str:
    """A MACCOR channel's state as the tester reports it (``running``, ``idle``, ...)."""
    from labrig.drivers.maccor import MaccorCycler

    async def read() -> str:
        async with MaccorCycler.from_url(address, channels=8) as cycler:
            return str((await cycler.channel(number).status()).state.value)

    return asyncio.run(read())


def signal_run(address: str, folder: Path, sig: signal.Signals, *, stage: str = "loading",
               delay_s: float = 0.0, channel: int = 0) -> dict[str, Any]:  # fmt: skip
    """Start ``labrig run`` (a long cycling protocol on a MACCOR channel), wait for
    ``stage`` (a key of :data:`SIGNAL_STAGES`), then ``delay_s`` more, send ``sig``: what
    it left (exit code, whether it said so, ``run.json`` state and reason, the tester's
    channel state). ``reached`` is False when the command ended before the stage."""
    (folder / "drill.yaml").write_text(SIGNAL_PROTOCOL)
    station = maccor_station(folder, address, channel)
    out = folder / "runs"
    proc = start(["run", str(folder / "drill.yaml"), "--station", str(station),
                  "--out", str(out), "-q", "--poll", "0.02"], output=True)  # fmt: skip
    ready = SIGNAL_STAGES[stage]
    reached = wait_until(lambda: handlers_installed(proc), proc=proc) and wait_until(
        lambda: ready(out), 120, proc=proc
    )
    if reached:
        time.sleep(delay_s)
    proc.send_signal(sig)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill(proc)
        stdout, stderr = proc.communicate()
    meta = run_meta(run_dir(out))
    said = f"interrupted by {sig.name}" in stdout + stderr
    return {
        "signal": sig.name,
        "stage": stage,
        "delay_s": delay_s,
        "reached": reached,
        "code": proc.returncode,
        "said": said,
        "output": stdout + stderr,
        "run_dir": run_dir(out) is not None,
        "state": meta.get("state"),
        "reason": meta.get("reason"),
        "channel": maccor_channel_state(address, channel),
    }


# ---------------------------------------------------------------------- the daemon
def daemon_ls(runs: Path) -> list[dict[str, Any]] | None:
    """The daemon's runs; None while no daemon answers (not there, or still starting)."""
    from labrig.orchestrator.daemon import DaemonError, DaemonUnavailable, request

    try:
        rows: list[dict[str, Any]] = request(runs, {"op": "ls"}, timeout_s=10)["runs"]
    except (DaemonUnavailable, DaemonError):
        return None
    return rows


def serve(runs: Path, station: Path, log: Path, *, grace_s: float = 60.0
          ) -> subprocess.Popen[str]:  # fmt: skip
    """``labrig serve`` (stderr appended to ``log``), once it answers."""
    proc = start(["serve", "--station", str(station), "--runs", str(runs), "--poll", "0.05",
                  "--stop-grace", f"{grace_s:g}"], log=log)  # fmt: skip
    if not wait_until(lambda: daemon_ls(runs) is not None, proc=proc):
        kill(proc)
        raise AssertionError(f"labrig serve did not start: {log.read_text()[-2000:]}")
    return proc


@contextmanager
def serving(runs: Path, station: Path, log: Path, *, grace_s: float = 60.0
            ) -> Iterator[subprocess.Popen[str]]:  # fmt: skip
    """:func:`serve` for a block; killed on the way out if it is still running."""
    proc = serve(runs, station, log, grace_s=grace_s)
    try:
        yield proc
    finally:
        kill(proc)

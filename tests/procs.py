"""Real processes for the slow tests and the fault benchmarks.

A simulator in its own process (``labrig sim serve``), ``labrig`` commands as
subprocesses, and waits for the states they reach: a run directory, a state in its
``run.json``, events of its own. Waits are for states; their deadlines only bound a
test that would otherwise hang.
"""

from __future__ import annotations

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

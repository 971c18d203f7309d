"""SIGINT and SIGTERM during ``labrig run``: at any moment the run ends with a final
state in ``run.json``, its instruments in their safe state, and a message saying so.

- Before the event loop runs (loading the protocol and the station) a signal raises
  :class:`Interrupted`: nothing was started, nothing is left behind.
- While the instruments are being opened, the run's task is cancelled: no run directory
  exists yet and no instrument was commanded.
- Once the run has started, its executor is told why (``interrupted by SIGINT``) and its
  task cancelled: every instrument to its safe state, then the final writes
  (``aborted``, with that reason). Further signals meanwhile are reported and ignored:
  cutting the safe state short would leave an instrument running.

With the loop's own handlers (not Python's default SIGINT handler), and pyarrow's own
interruption of long operations turned off, no library sees a ``KeyboardInterrupt`` or an
``ArrowCancelled`` half-way through a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from . import _early

if TYPE_CHECKING:
    from ..run.lifecycle import RunLifecycle

__all__ = [
    "Interrupted",
    "Stopper",
    "interruptible",
    "signals_handled",
]

P = ParamSpec("P")
R = TypeVar("R")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_ran = False  # the run's event loop took the signals over (the run began)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM before the run's event loop took the signals over."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.sig = sig


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block (the previous
    handlers come back after it)."""
    if not _main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


class Stopper:
    """The signals while the run's event loop runs (see the module docstring)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.signal: signal.Signals | None = None
        self.executor: RunLifecycle | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if not _main_thread():
            yield
            return
        global _ran
        _ran = True
        import pyarrow

        # pyarrow would otherwise take SIGINT over during its long operations and end
        # them with ArrowCancelled: a run's write failing instead of the run stopping
        pyarrow.enable_signal_handlers(False)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for s in SIGNALS:
            loop.add_signal_handler(s, self._on_signal, s, task)
        try:
            yield
        finally:
            for s in SIGNALS:
                loop.remove_signal_handler(s)
                signal.signal(s, _raise)  # the loop put back Python's defaults

    def _on_signal(self, sig: signal.Signals, task: asyncio.Task[Any]) -> None:
        if self.signal is not None:
            self.console.print(
                f"{sig.name}: already stopping; waiting for the instruments' safe state",
                highlight=False,
            )
            return
        self.signal = sig
        self.console.print(f"{sig.name}: stopping the run; instruments to their safe state",
                           highlight=False)  # fmt: skip
        if self.executor is not None:
            self.executor.request_abort(f"interrupted by {sig.name}")
        task.cancel()

    def report(self, sig: signal.Signals) -> int:
        """Say how the run ended after a signal; returns the exit code (128 + signal)."""
        ex = self.executor
        if ex is None:
            self.console.print(
                f"interrupted by {sig.name} before the run started: nothing was started, "
                "no instrument was commanded, no run directory was written",
                highlight=False,
                soft_wrap=True,
            )
            return 128 + int(sig)
        root: Path = ex.store.root
        state, reason = _final_state(root, f"interrupted by {sig.name}")
        self.console.print(
            f"interrupted by {sig.name}: the run ended {state} ({reason}); every instrument "
            "was sent to its safe state (a failure to get there is a fault event)",
            highlight=False,
            soft_wrap=True,
        )
        self.console.print(f"run directory: {root}", markup=False, highlight=False,
                           soft_wrap=True)  # fmt: skip
        return 128 + int(sig)


def _final_state(root: Path, reason: str) -> tuple[str, str]:
    """The state ``run.json`` ends with; a run left unfinished is marked aborted."""
    try:
        meta = json.loads((root / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown", reason
    state = str(meta.get("state"))
    if state in ("running", "paused", "pending"):
        from ..scheduler import mark_run

        with contextlib.suppress(Exception):
            mark_run(root, state="aborted", reason=reason, resumable=False, durable=True)
            return "aborted", reason
    return state, str(meta.get("reason") or reason)


def interruptible(fn: Callable[P, R]) -> Callable[P, R]:
    """A command whose SIGINT/SIGTERM before its run started says so (exit 128+signal)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with signals_handled():
            try:
                if _early.noted:
                    raise Interrupted(signal.Signals(_early.noted[0]))
                return fn(*args, **kwargs)
            except Interrupted as exc:
                what = (
                    "after the run ended"
                    if _ran
                    else "before the run started: nothing was started, no instrument was commanded"
                )
                Console(stderr=True).print(
                    f"interrupted by {exc.sig.name} {what}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(128 + int(exc.sig)) from None

    return wrapper

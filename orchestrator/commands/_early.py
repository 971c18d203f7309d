"""The first thing ``labrig run`` does, before the rest of the command line tool loads:
note a SIGINT or SIGTERM instead of dying on it, so the command can say it was
interrupted (see :mod:`._interrupt`). Standard library only: it runs before anything else.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

__all__ = ["install", "noted"]

#: signals received before the command took them over (their numbers)
noted: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    noted.append(signum)


def install(argv: list[str]) -> None:
    """For ``labrig run``: note SIGINT/SIGTERM from now on."""
    if argv[1:2] != ["run"] or threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _note)


install(sys.argv)

"""Simulated instruments that ``labrig sim serve <name>`` can start.

``SIMULATORS`` maps a name to an async factory. A factory starts one simulated
instrument from :class:`ServeOptions`, hands everything it must clean up to the given
``contextlib.AsyncExitStack`` (servers, pty file descriptors, background tasks under a
TaskGroup entered on the stack) and returns the address a driver connects to, as a
transport URL (``tcp://127.0.0.1:57570``, ``serial:///dev/pts/7?baudrate=230400``,
``visa://TCPIP::127.0.0.1::5025::SOCKET``). Another area adds its instruments with
:func:`register`, from its own module, listed in ``_PROVIDERS`` so they load lazily.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["SIMULATORS", "ServeOptions", "SimFactory", "names", "register"]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How to serve: a TCP port (0 picks a free one) or a pseudo-terminal, and the speed.

    ``speed`` is simulated seconds per real second when serving on a real clock.
    """

    host: str = "127.0.0.1"
    port: int | None = None
    pty: bool = False
    speed: float = 1.0


SimFactory = Callable[[ServeOptions, contextlib.AsyncExitStack], Awaitable[str]]

SIMULATORS: dict[str, SimFactory] = {}

#: modules that call :func:`register` when imported (one per instrument family)
_PROVIDERS: tuple[str, ...] = (
    "labrig.simulators.maccor.serve",
    "labrig.simulators.palmsens.serve",
    "labrig.simulators.keithley.serve",
    "labrig.simulators.furnace.serve",
    "labrig.simulators.gas.serve",
    "labrig.simulators.chamber.serve",
)


def register(name: str, factory: SimFactory) -> None:
    """Make ``labrig sim serve <name>`` start ``factory``."""
    if name in SIMULATORS and SIMULATORS[name] is not factory:
        raise ValueError(f"simulator {name!r} is registered twice")
    SIMULATORS[name] = factory


def load_all(extra: tuple[str, ...] = ()) -> dict[str, SimFactory]:
    """Import every provider module (skipping ones not written yet) and return the table."""
    for mod in (*_PROVIDERS, *extra):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            # a provider not written yet is skipped; one that exists but lacks a
            # dependency is a real error
            if exc.name is None or not (mod == exc.name or mod.startswith(exc.name + ".")):
                raise
    return SIMULATORS


def names() -> list[str]:
    return sorted(load_all())

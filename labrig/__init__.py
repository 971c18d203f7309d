"""labrig: run test protocols on laboratory instruments, real or simulated.

The installed package holds four subpackages, kept as top-level folders in the
repository: :mod:`labrig.protocols` (the protocol language, library and analysis),
:mod:`labrig.drivers` (transports, instrument drivers, capability interfaces),
:mod:`labrig.simulators` (physics models and wire-level simulated instruments) and
:mod:`labrig.orchestrator` (CLI, executor, journal, storage, scheduler, MQTT).

``labrig.__version__`` is read from the installed metadata on first use: importing
:mod:`importlib.metadata` costs more than the quickest commands (``labrig ls --lab``)
take in all.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("labrig")
        except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
            version = "0+unknown"
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

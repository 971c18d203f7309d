"""labrig: run test protocols on laboratory instruments, real or simulated.

The installed package holds four subpackages, kept as top-level folders in the
repository: :mod:`labrig.protocols` (the protocol language, library and analysis),
:mod:`labrig.drivers` (transports, instrument drivers, capability interfaces),
:mod:`labrig.simulators` (physics models and wire-level simulated instruments) and
:mod:`labrig.orchestrator` (CLI, executor, journal, storage, scheduler, MQTT).
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("labrig")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = ["__version__"]

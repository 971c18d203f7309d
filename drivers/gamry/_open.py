"""Open a Gamry channel from a station's options (the lab: comtypes; tests: a backend)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ._channel import GamryChannel
from ._com import ComBackend, comtypes_backend

__all__ = ["OPTIONS", "open_gamry"]

OPTIONS = frozenset({
    "section", "pstat_class", "call_timeout_s", "poll_s", "max_frequency_Hz",
    "readz_retries", "ocv_sample_s", "ocv_before_eis_s", "typelib", "supervise_s",
})  # fmt: skip


@contextlib.asynccontextmanager
async def open_gamry(
    *, backend: ComBackend | None = None, name: str = "gamry", **options: Any
) -> AsyncIterator[GamryChannel]:
    """A ready :class:`GamryChannel`; cell off and the instrument closed on exit.

    ``backend`` is the simulator's in tests; None loads GamryCOM through comtypes (with
    the ``typelib`` option naming the type library when it is not the default).
    """
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValueError(f"unknown Gamry option(s): {', '.join(sorted(unknown))}")
    typelib = options.pop("typelib", None)
    com = backend if backend is not None else comtypes_backend(typelib)
    async with GamryChannel(com, name=name, **options) as ch:
        yield ch

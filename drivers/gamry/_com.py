"""GamryCOM through comtypes, behind one small seam, called on one thread under deadlines.

What labrig uses of COM is four things, the :class:`ComBackend`: the type library's
constants (``CellOn``, ``PstatMode``...), creating an object by ProgID
(``GamryCOM.GamryDeviceList``, ``GamryCOM.GamryPC6Pstat``, ``GamryCOM.GamryReadZ``...),
connecting an event sink to an object, and pumping the events that are due. In the lab
:func:`comtypes_backend` provides them (Windows only; comtypes is imported when a
Gamry is opened, never before); tests hand in the simulator's backend instead.

COM objects live in the apartment of the thread that made them: every call of a
channel runs on its one :class:`~drivers.libthread.LibraryThread`, each under a
deadline; a call that outlives it makes the channel fail fast until it returns.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from labrig.drivers.capabilities import InstrumentError, InstrumentTimeout
from labrig.drivers.libthread import LibraryThread

__all__ = ["GAMRYCOM_TYPELIB", "ComBackend", "ComCaller", "GamryError", "comtypes_backend"]

T = TypeVar("T")

#: GamryCOM's type library (GUID, major, minor) as public examples load it (check the
#: Framework version installed; ``typelib`` may instead name GamryCOM.exe's path)
GAMRYCOM_TYPELIB: list[Any] = ["{BD962F0D-A990-4823-9CF5-284D1CDD9C6D}", 1, 0]


class GamryError(InstrumentError):
    """GamryCOM raised an error (``hresult`` and its text when known)."""

    def __init__(self, message: str, *, hresult: int | None = None) -> None:
        super().__init__(message)
        self.hresult = hresult


class ComBackend(Protocol):
    """What the driver needs of COM (comtypes in the lab, the simulator in tests)."""

    constants: Any  # the type library's module: CellOn, CellOff, PstatMode, GstatMode...
    errors: tuple[type[BaseException], ...]  # what COM calls raise (comtypes.COMError)

    def create(self, progid: str) -> Any: ...

    def events(self, source: Any, sink: Any) -> Any:
        """Connect ``sink``'s ``_I<Interface>_<Event>`` methods; keep the result alive."""
        ...

    def pump(self, timeout_s: float) -> None:
        """Deliver the events that are due (waits at most ``timeout_s``)."""
        ...

    def thread_init(self) -> None: ...

    def thread_exit(self) -> None: ...


class _Comtypes:
    def __init__(self, typelib: Any) -> None:
        import comtypes
        import comtypes.client as client

        self._comtypes = comtypes
        self._client = client
        self.constants = client.GetModule(typelib or GAMRYCOM_TYPELIB)
        self.errors = (comtypes.COMError, OSError)

    def create(self, progid: str) -> Any:
        return self._client.CreateObject(progid)

    def events(self, source: Any, sink: Any) -> Any:
        return self._client.GetEvents(source, sink)

    def pump(self, timeout_s: float) -> None:
        self._client.PumpEvents(timeout_s)

    def thread_init(self) -> None:
        self._comtypes.CoInitialize()

    def thread_exit(self) -> None:
        self._comtypes.CoUninitialize()


def comtypes_backend(typelib: Any = None) -> ComBackend:
    """GamryCOM through comtypes (the Gamry Framework must be installed)."""
    if sys.platform != "win32":
        raise GamryError(
            "GamryCOM is a Windows COM server: run labrig on the instrument's PC (with the "
            "Gamry Framework and comtypes installed), or dry-run with --sim"
        )
    try:
        return _Comtypes(typelib)
    except ImportError:
        raise GamryError("comtypes is not installed (pip install comtypes)") from None


class ComCaller:
    """Runs COM calls of one channel on its thread, one at a time, under a deadline."""

    def __init__(self, backend: ComBackend, *, name: str, timeout_s: float = 10.0) -> None:
        self.backend = backend
        self.name = name
        self.timeout_s = timeout_s
        self.calls = 0
        self._thread = LibraryThread(
            f"{name}-com", initializer=backend.thread_init, finalizer=backend.thread_exit
        )
        self._lock = asyncio.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._stuck = ""

    def close(self) -> None:
        self._thread.shutdown(wait=self._idle.is_set())

    async def __call__(
        self, fn: Callable[..., T], *args: Any, what: str = "", timeout_s: float | None = None
    ) -> T:
        what = what or getattr(fn, "__name__", "COM call")
        deadline = self.timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            if not self._idle.is_set():
                raise InstrumentTimeout(f"{self.name}: {self._stuck} has not returned; "
                                        f"{what} not sent")  # fmt: skip
            self._idle.clear()
            self._stuck = what
            self.calls += 1
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._thread, functools.partial(self._run, fn, args))
            fut.add_done_callback(_consume)
            try:
                async with asyncio.timeout(deadline):
                    return await asyncio.shield(fut)
            except TimeoutError:
                raise InstrumentTimeout(
                    f"{self.name}: {what} did not return within {deadline:g} s"
                ) from None
            except self.backend.errors as exc:
                raise GamryError(f"{self.name}: {what} failed: {exc}",
                                 hresult=_hresult(exc)) from None  # fmt: skip

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return fn(*args)
        finally:
            self._idle.set()


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _hresult(exc: BaseException) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None

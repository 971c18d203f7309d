"""One thread that runs a vendor library's calls, in order, for its whole life.

Vendor libraries (BioLogic's EClib DLL, Gamry's COM server) block, are not thread-safe,
and (COM) must be called from the thread that created their objects. A
:class:`LibraryThread` is a ``concurrent.futures.Executor`` with one daemon thread: hand
it to ``loop.run_in_executor`` (which a virtual-clock loop counts as busy, so simulated
time stands still while a call runs). It is a daemon: a call stuck inside a vendor
library must not keep the process from exiting.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LibraryThread"]


class LibraryThread(concurrent.futures.Executor):
    """Runs submitted calls one after another on one daemon thread.

    ``initializer`` runs first on that thread (e.g. ``CoInitialize`` for COM);
    ``finalizer`` last, when the thread is shut down.
    """

    def __init__(
        self,
        name: str,
        *,
        initializer: Callable[[], None] | None = None,
        finalizer: Callable[[], None] | None = None,
    ) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._name = name
        self._init = initializer
        self._fini = finalizer
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise RuntimeError(f"{self._name}: library thread is shut down")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((fut, fn, args, kwargs))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return fut

    def _run(self) -> None:
        if self._init is not None:
            self._init()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                fut, fn, args, kwargs = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # handed to the awaiting task
                    fut.set_exception(exc)
        finally:
            if self._fini is not None:
                self._fini()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if wait and self._thread is not None:
            self._thread.join(timeout=2.0)

"""JSON answers of a run page encoded once and kept, in memory and on disk.

A run page asks first for the whole-run V/I/T view, the per-cycle table and the newest
events. For a long run these are a few hundred kilobytes of JSON whose encoding costs
more than reading them, so each is kept as bytes (plain and gzipped) under a key that
names the files it was made from (their names, sizes and modification times): a file
that changes makes a new key, and the old answer is never served again. The whole-run
view and the cycle table also go to the cache directory (``--cache``, beside the chunk
summaries; never the run directory), so the first page after a restart sends them as
they are, without reading a record.

A whole-run view ends with the run's live readings (``"live":[...]``, from MQTT or the
daemon), which change every second: the stored part is kept as a prefix and its
compressor's state, and each answer adds only the live tail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import dumps

__all__ = ["GZIP_FROM", "Bodies", "Encoded", "files_key"]

log = logging.getLogger("labrig.web")

#: smaller answers go as they are (gzip's own cost outweighs what it saves)
GZIP_FROM = 8192
_LEVEL = 6  # made once, sent many times: the smaller the better
_LIVE_TAIL = b',"live":[]}'


def _gzip(data: bytes) -> bytes:
    co = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)
    return co.compress(data) + co.flush()


def files_key(*paths: Path | tuple[Path, str]) -> str:
    """A short key naming the state of files: for each path its size and modification
    time (absent: ``-``); a ``(folder, prefix)`` pair names every file in the folder whose
    name starts with the prefix."""
    parts: list[str] = []
    for item in paths:
        if isinstance(item, tuple):
            folder, prefix = item
            try:
                entries = sorted((e for e in os.scandir(folder) if e.name.startswith(prefix)),
                                 key=lambda e: e.name)  # fmt: skip
            except OSError:
                entries = []
            for e in entries:
                try:
                    st = e.stat()
                except OSError:
                    continue
                parts.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}")
            continue
        try:
            st = item.stat()
            parts.append(f"{item.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{item.name}:-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


@dataclass
class Encoded:
    """One JSON answer as bytes: plain, gzipped, and a little of what it holds (``meta``:
    for a whole-run view the run time of its last record)."""

    body: bytes
    gz: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    _prefix: Any = field(default=None, repr=False)  # compressor after the stored part
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, obj: Any, meta: dict[str, Any] | None = None) -> Encoded:
        body = dumps(obj).encode()
        return cls(body, _gzip(body) if len(body) >= GZIP_FROM else b"", meta or {})

    def pick(self, gzip_ok: bool) -> tuple[bytes, bool]:
        """(bytes to send, whether they are gzipped)."""
        if gzip_ok and self.gz:
            return self.gz, True
        return self.body, False

    def with_live(self, live_json: bytes, gzip_ok: bool) -> tuple[bytes, bool]:
        """This answer (which ends ``,"live":[]}``) with its live readings ``[...]`` in."""
        if live_json == b"[]":
            return self.pick(gzip_ok)
        head = self.body[: -len(_LIVE_TAIL)]
        tail = b',"live":' + live_json + b"}"
        if not (gzip_ok and self.gz):
            return head + tail, False
        with self._lock:
            if self._prefix is None:
                co = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)
                self._prefix = (co.compress(head), co)
            done, co = self._prefix
            co = co.copy()
        return done + co.compress(tail) + co.flush(), True


class Bodies:
    """Encoded answers by key: the newest ``max_items`` in memory; those saved with
    ``keep=True`` also on disk under ``root`` (``None``: memory only)."""

    def __init__(self, root: Path | None, max_items: int = 48) -> None:
        self.root = root
        self.max_items = max_items
        self._mem: OrderedDict[tuple[str, str, str], Encoded] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[tuple[str, str], threading.Lock] = {}
        self._warned = False
        self.made = 0  # answers encoded (not found in memory or on disk): tests, bench

    def _path(self, run_id: str, kind: str, version: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / run_id / "pages" / f"{kind}-{version}.json.gz"

    def get(self, run_id: str, kind: str, version: str) -> Encoded | None:
        key = (run_id, kind, version)
        with self._lock:
            hit = self._mem.get(key)
            if hit is not None:
                self._mem.move_to_end(key)
                return hit
        path = self._path(run_id, kind, version)
        if path is None or not path.is_file():
            return None
        try:
            raw = path.read_bytes()
            head, _, gz = raw.partition(b"\n")
            meta = json.loads(head)
            body = zlib.decompress(gz, 31)
        except (OSError, ValueError, zlib.error):
            return None
        if not isinstance(meta, dict):
            return None
        found = Encoded(body, gz if len(body) >= GZIP_FROM else b"", meta)
        self._remember(key, found)
        return found

    def put(self, run_id: str, kind: str, version: str, enc: Encoded, keep: bool = False) -> None:
        self._remember((run_id, kind, version), enc)
        path = self._path(run_id, kind, version)
        if keep and path is not None:
            self._save(path, kind, enc)

    def get_or_make(
        self, run_id: str, kind: str, version: str, make: Callable[[], Encoded], keep: bool = False
    ) -> Encoded:
        """The answer under this key, made by ``make`` when neither memory nor disk has
        it; one maker at a time per run and kind (a page's request and the prefetch
        started with its HTML make it once)."""
        hit = self.get(run_id, kind, version)
        if hit is not None:
            return hit
        with self._lock:
            lock = self._making.setdefault((run_id, kind), threading.Lock())
        with lock:
            hit = self.get(run_id, kind, version)
            if hit is not None:
                return hit
            enc = make()
            with self._lock:
                self.made += 1
            self.put(run_id, kind, version, enc, keep)
            return enc

    def _remember(self, key: tuple[str, str, str], enc: Encoded) -> None:
        with self._lock:
            self._mem[key] = enc
            self._mem.move_to_end(key)
            while len(self._mem) > self.max_items:
                self._mem.popitem(last=False)

    def _save(self, path: Path, kind: str, enc: Encoded) -> None:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in path.parent.glob(f"{kind}-*.json.gz"):
                old.unlink(missing_ok=True)  # made from files that have changed since
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(enc.meta).encode() + b"\n")
                fh.write(enc.gz or _gzip(enc.body))
            os.replace(tmp, path)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("run page answers are kept in memory only: %s", exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

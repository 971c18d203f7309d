"""Fault injection for simulated instruments: manipulators of the byte stream.

A manipulator has one method, ``transform(direction, data)``, that returns the pieces to
deliver instead of ``data`` as ``(delay_s, chunk)`` pairs: several pieces split a frame,
changed bytes corrupt it, no pieces drop it, an infinite delay stalls the link for good
and a ``None`` chunk drops the connection. ``direction`` is ``"tx"`` for bytes the owner
sends and ``"rx"`` for bytes it receives. Simulator servers apply them to their own
traffic; the same objects fit the drivers' transports (which accept any object of this
shape), so one seeded fault plan can act at either end.

Every manipulator only acts on the directions it was given and counts what it did, so a
test can assert that the fault really happened. Randomness comes from a seeded
``random.Random`` so a failing scenario can be replayed from its seed.

:class:`ReplyFaults` is a switchboard of the common reply faults (silent, garbage,
truncated, corrupted, late) that a test or a drill flips on and off while a simulator
runs; it is a manipulator too, and the thermal simulators expose it as ``sim.faults``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Chain",
    "Corrupt",
    "Delay",
    "Disconnect",
    "Drop",
    "Garbage",
    "Piece",
    "ReplyFaults",
    "Split",
    "Stall",
    "apply_manipulators",
]

Direction = Literal["tx", "rx"]
Piece = tuple[float, bytes | None]


@dataclass
class _Base:
    """Shared bookkeeping: which directions, which messages (by count), how often done."""

    directions: tuple[Direction, ...] = ("tx",)
    #: act on the n-th message (0-based) in an acting direction and after, or only on it
    start: int = 0
    count: int | None = None  # how many messages to act on; None = all from ``start``
    seen: int = field(default=0, init=False)
    applied: int = field(default=0, init=False)

    def transform(self, direction: Direction, data: bytes) -> Sequence[Piece]:
        if direction not in self.directions:
            return [(0.0, data)]
        index = self.seen
        self.seen += 1
        if index < self.start or (self.count is not None and index >= self.start + self.count):
            return [(0.0, data)]
        self.applied += 1
        return self.act(data)

    def act(self, data: bytes) -> Sequence[Piece]:
        return [(0.0, data)]


@dataclass
class Split(_Base):
    """Cut each message into pieces of ``size`` bytes, ``gap_s`` apart."""

    size: int = 1
    gap_s: float = 0.0

    def act(self, data: bytes) -> Sequence[Piece]:
        n = max(1, self.size)
        return [
            (0.0 if i == 0 else self.gap_s, data[i : i + n]) for i in range(0, len(data), n)
        ] or [(0.0, data)]


@dataclass
class Corrupt(_Base):
    """Flip random bits in ``n_bytes`` positions of each message (seeded)."""

    n_bytes: int = 1
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def act(self, data: bytes) -> Sequence[Piece]:
        if not data:
            return [(0.0, data)]
        buf = bytearray(data)
        for _ in range(self.n_bytes):
            i = self.rng.randrange(len(buf))
            buf[i] ^= 1 << self.rng.randrange(8)
        return [(0.0, bytes(buf))]


@dataclass
class Garbage(_Base):
    """Put ``junk`` before (or instead of) the message."""

    junk: bytes = b"\x00\xff garbage \xfe\r\n"
    replace: bool = False

    def act(self, data: bytes) -> Sequence[Piece]:
        return [(0.0, self.junk)] if self.replace else [(0.0, self.junk + data)]


@dataclass
class Drop(_Base):
    """Swallow the message: the peer never sees it."""

    def act(self, data: bytes) -> Sequence[Piece]:
        return []


@dataclass
class Delay(_Base):
    """Deliver the message ``delay_s`` late."""

    delay_s: float = 1.0

    def act(self, data: bytes) -> Sequence[Piece]:
        return [(self.delay_s, data)]


@dataclass
class Stall(_Base):
    """Hold the message (and the stream behind it) for ``stall_s`` (default: for ever)."""

    stall_s: float = math.inf

    def act(self, data: bytes) -> Sequence[Piece]:
        return [(self.stall_s, data)]


@dataclass
class Disconnect(_Base):
    """Drop the connection instead of delivering the message (optionally after a part)."""

    keep_bytes: int = 0

    def act(self, data: bytes) -> Sequence[Piece]:
        head: list[Piece] = [(0.0, data[: self.keep_bytes])] if self.keep_bytes else []
        return [*head, (0.0, None)]


@dataclass
class Chain:
    """Several manipulators applied in order."""

    parts: Sequence[_Base | Chain] = ()

    def transform(self, direction: Direction, data: bytes) -> Sequence[Piece]:
        return apply_manipulators(self.parts, direction, data)


@dataclass
class ReplyFaults:
    """Switches that manipulate replies (direction ``"tx"``) on their way out; seeded.

    ``silent``: drop every reply. ``garbage``: replace each reply by random bytes of the
    same length. ``truncate_to``: keep only the first n bytes. ``corrupt``: flip one bit
    of one byte. ``delay_s``: answer that much later. ``drop_next``: drop only the next
    n replies. ``extra``: further callables applied in order (return None to drop).
    ``dropped`` counts the replies swallowed.
    """

    silent: bool = False
    garbage: bool = False
    truncate_to: int | None = None
    corrupt: bool = False
    delay_s: float = 0.0
    drop_next: int = 0
    seed: int = 0
    extra: list[Callable[[bytes], bytes | None]] = field(default_factory=list)
    dropped: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def clear(self) -> None:
        """Every switch off (the counters stay)."""
        self.silent = self.garbage = self.corrupt = False
        self.truncate_to = None
        self.delay_s = 0.0
        self.drop_next = 0
        self.extra.clear()

    def apply(self, reply: bytes) -> bytes | None:
        """The reply as it goes out, or None when it is swallowed."""
        if self.silent or self.drop_next > 0:
            self.drop_next = max(0, self.drop_next - 1)
            self.dropped += 1
            return None
        data = reply
        if self.garbage:
            data = self._rng.randbytes(len(reply))
        if self.truncate_to is not None:
            data = data[: self.truncate_to]
        if self.corrupt and data:
            i = self._rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << self._rng.randrange(8))]) + data[i + 1 :]
        out: bytes | None = data
        for f in self.extra:
            if out is None:
                break
            out = f(out)
        return out

    def transform(self, direction: Direction, data: bytes) -> Sequence[Piece]:
        if direction != "tx":
            return [(0.0, data)]
        out = self.apply(data)
        return [(self.delay_s, out)] if out else []


def apply_manipulators(manipulators: Sequence[Any], direction: str, data: bytes) -> list[Piece]:
    """Pass ``data`` through each manipulator in turn: the (delay, bytes | None) pieces
    to deliver, delays adding up along the way (None: drop the connection)."""
    pieces: list[Piece] = [(0.0, data)]
    for m in manipulators:
        nxt: list[Piece] = []
        for delay, chunk in pieces:
            if chunk is None:
                nxt.append((delay, None))
                continue
            out = list(m.transform(direction, chunk))
            if out:
                out[0] = (out[0][0] + delay, out[0][1])
            nxt.extend(out)
        pieces = nxt
    return pieces

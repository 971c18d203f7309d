"""Split a MacNet request stream into JSON objects.

MacNet requests carry no terminator: a request ends where its top-level JSON object
closes. The scanner tracks strings and escapes so braces inside strings do not count,
resumes where it stopped when more bytes arrive (a frame split over many reads costs
linear time), and turns bytes that cannot start an object into a garbage frame so the
tester can answer "Parse error" and carry on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Garbage", "JsonFramer"]

MAX_REQUEST = 8 << 20
_SPECIAL = re.compile(rb'[{}"\\\\]')


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that were not a JSON object."""

    data: bytes


class JsonFramer:
    """Feed bytes, get complete top-level JSON objects (or :class:`Garbage`)."""

    def __init__(self, max_request: int = MAX_REQUEST) -> None:
        self.max_request = max_request
        self._buf = bytearray()
        self._pos = 0
        self._depth = 0
        self._in_str = False
        self._esc = False

    def feed(self, data: bytes) -> list[bytes | Garbage]:
        self._buf += data
        out: list[bytes | Garbage] = []
        while True:
            frame = self._next()
            if frame is None:
                break
            out.append(frame)
        return out

    def _reset_scan(self) -> None:
        self._pos = 0
        self._depth = 0
        self._in_str = False
        self._esc = False

    def _next(self) -> bytes | Garbage | None:
        buf = self._buf
        if self._depth == 0 and self._pos == 0:
            # skip whitespace between requests; anything else before "{" is garbage
            i = 0
            while i < len(buf) and buf[i] in b" \t\r\n":
                i += 1
            if i:
                del buf[:i]
            if not buf:
                return None
            if buf[0] != ord("{"):
                j = buf.find(b"{")
                j = len(buf) if j < 0 else j
                junk = bytes(buf[:j])
                del buf[:j]
                return Garbage(junk)
        i = self._pos
        n = len(buf)
        depth, in_str, esc = self._depth, self._in_str, self._esc
        if esc:  # the previous read ended on a backslash: skip the byte it escapes
            if i >= n:
                return None
            i += 1
            esc = False
        # jump between the only bytes that matter instead of walking every byte
        view = bytes(buf)  # a regex scan must not pin the bytearray we cut below
        for m in _SPECIAL.finditer(view, i):
            p = m.start()
            if p < i:
                continue  # this byte was escaped
            c = view[p]
            i = p + 1
            if in_str:
                if c == 0x5C:  # backslash: the next byte is taken literally
                    if p + 1 >= n:
                        esc = True
                    i = p + 2
                elif c == 0x22:
                    in_str = False
            elif c == 0x22:
                in_str = True
            elif c == 0x7B:
                depth += 1
            elif c == 0x7D:
                depth -= 1
                if depth == 0:
                    frame = bytes(buf[:i])
                    del buf[:i]
                    self._reset_scan()
                    return frame
        i = n
        if n > self.max_request:
            junk = bytes(buf)
            buf.clear()
            self._reset_scan()
            return Garbage(junk)
        self._pos, self._depth, self._in_str, self._esc = i, depth, in_str, esc
        return None

"""What a MACCOR channel's tests are, learned from the tester alone (no journal, no
attached block): the names this driver gives its tests, and the step ids a test's
procedure carries.

The driver names the test of block ``k`` of a run on channel ``c``
``LR{c:03d}R{tag}B{k}`` (and its procedure ``LR{c:03d}R{tag}B{k}.000``): ``tag`` is
:func:`run_tag` of the run's id, 8 hex digits that every restart of the run derives
again. Tests of different runs on one channel therefore never share a name: a tester
refuses a name that its archive already holds ((6,11) "File name exists in Archive"),
and a new connection takes none of another run's tests for its own. A channel bound to
no run (a driver used on its own) names them ``LR{c:03d}B{k}``. Names stay within the
25 characters of MacNet's binary start message (``LR000R3F9A21C0B123456`` is 21).

MacNet's (4,6) "file name, test procedure name and comments" gives the name of a
channel's test (its data file), so a new connection learns which block the channel is
on from the tester itself; the data files of earlier blocks are on the tester's disk
under their names. Each procedure step's ``StepNote`` is
``"<kind> #<step id>"`` (:func:`.procedure.compile_block`), which gives the records of a
test found this way their step ids back.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import InstrumentProtocolError

__all__ = [
    "TestInfo",
    "block_of",
    "block_test_name",
    "decode_test_info",
    "run_tag",
    "step_ids_of",
]

TAG_LEN = 8
# case-insensitive: a tester on a Windows disk may hand a name back in another case
_NAME = re.compile(rf"LR(\d{{3}})(?:R([0-9A-F]{{{TAG_LEN}}}))?B(\d{{1,12}})", re.IGNORECASE)
_NOTE = re.compile(r"\S+ #(\d{1,12})")


def run_tag(run_id: str) -> str:
    """The short tag of a run in its tests' names: 8 hex digits of the run id's hash."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:TAG_LEN].upper()


def block_test_name(channel: int, block_id: int, tag: str | None = None) -> str:
    """The name (data file and procedure) of ``block_id`` 's test on ``channel`` for
    the run tagged ``tag`` (None: a channel bound to no run)."""
    if tag is None:
        return f"LR{channel:03d}B{block_id}"
    return f"LR{channel:03d}R{tag}B{block_id}"


def block_of(name: str, channel: int, tag: str | None = None) -> int | None:
    """The block id of a test this driver named for ``channel`` and the run tagged
    ``tag`` (None: another test, another channel's or another run's)."""
    m = _NAME.fullmatch(name.strip())
    if m is None or int(m.group(1)) != channel:
        return None
    found = m.group(2).upper() if m.group(2) is not None else None
    if found != tag:
        return None
    return int(m.group(3))


@dataclass(frozen=True, slots=True)
class TestInfo:
    """What (4,6) says of a channel's test (names without the fixed-width padding)."""

    __test__ = False  # not a pytest class

    test_name: str
    proc_name: str


def decode_test_info(result: Mapping[str, Any], command: bytes) -> TestInfo:
    """Typed (4,6) reply: ``TestName`` is required, ``ProcName`` may be absent."""
    name = result.get("TestName")
    proc = result.get("ProcName", "")
    if not isinstance(name, str) or not isinstance(proc, str):
        raise InstrumentProtocolError(
            f"MacNet (4,6) reply has TestName {name!r}, ProcName {proc!r}: expected text",
            command=command,
            reply=repr(dict(result))[:300],
        )
    return TestInfo(name.strip(), proc.strip())


def step_ids_of(xml: str) -> npt.NDArray[np.int64]:
    """Procedure step number ``n`` -> step id at ``[n - 1]``, then ``-1`` (the End step
    and anything past it); a step whose note is not ours gets ``-1`` too."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return np.array([-1], dtype=np.int64)
    ids: list[int] = []
    for step in root.iter("TestStep"):
        if (step.findtext("StepType") or "").strip() == "End":
            break
        m = _NOTE.fullmatch((step.findtext("StepNote") or "").strip())
        ids.append(int(m.group(1)) if m else -1)
    return np.array([*ids, -1], dtype=np.int64)

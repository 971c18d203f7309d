"""What a MACCOR channel's tests are, learned from the tester alone (no journal, no
attached block): the names this driver gives its tests, and the step ids a test's
procedure carries.

The driver names the test of block ``k`` on channel ``c`` ``LR{c:03d}B{k}`` (and its
procedure ``LR{c:03d}B{k}.000``). MacNet's (4,6) "file name, test procedure name and
comments" gives the name of a channel's test (its data file), so a new connection learns
which block the channel is on from the tester itself; the data files of earlier blocks
are on the tester's disk under their names. Each procedure step's ``StepNote`` is
``"<kind> #<step id>"`` (:func:`.procedure.compile_block`), which gives the records of a
test found this way their step ids back.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labrig.drivers.capabilities import InstrumentProtocolError

__all__ = ["TestInfo", "block_of", "block_test_name", "decode_test_info", "step_ids_of"]

_NAME = re.compile(r"LR(\d{3})B(\d{1,12})")
_NOTE = re.compile(r"\S+ #(\d{1,12})")


def block_test_name(channel: int, block_id: int) -> str:
    """The name (data file and procedure) of ``block_id`` 's test on ``channel``."""
    return f"LR{channel:03d}B{block_id}"


def block_of(name: str, channel: int) -> int | None:
    """The block id of a test this driver named for ``channel`` (None: another test)."""
    m = _NAME.fullmatch(name.strip())
    if m is None or int(m.group(1)) != channel:
        return None
    return int(m.group(2))


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

"""The names the MACCOR driver gives its tests, and step ids read back from a procedure."""

from __future__ import annotations

import pytest

from labrig.drivers.capabilities import (
    ChannelStep,
    EndCondition,
    InstrumentProtocolError,
    seq_text,
)
from labrig.drivers.maccor.found import (
    block_of,
    block_test_name,
    decode_test_info,
    run_tag,
    step_ids_of,
)
from labrig.drivers.maccor.procedure import compile_block


def test_test_names_carry_channel_and_block() -> None:
    assert block_test_name(3, 17) == "LR003B17"
    assert block_of("LR003B17", 3) == 17
    assert block_of("LR003B17   ", 3) == 17  # (4,6) fields are padded with spaces
    assert block_of("LR003B17", 4) is None  # another channel's
    for other in ("", "Random", "LR003B", "LR03B1", "xLR003B1", "LR003B1.000"):
        assert block_of(other, 3) is None


def test_test_names_carry_the_runs_tag_and_only_that_runs_are_its_own() -> None:
    tag = run_tag("20261203-101500-aging-cell7")
    assert tag == run_tag("20261203-101500-aging-cell7")  # every restart derives it again
    assert len(tag) == 8 and tag != run_tag("20261203-101500-aging-cell8")
    name = block_test_name(3, 123456, tag)
    assert name == f"LR003R{tag}B123456" and len(name) <= 25  # MacNet's binary field
    assert block_of(name, 3, tag) == 123456
    assert block_of(name.lower() + "  ", 3, tag) == 123456  # a tester may change the case
    assert block_of(name, 3, run_tag("another run")) is None  # another run's test
    assert block_of(name, 3) is None  # not a test of a channel bound to no run
    assert block_of("LR003B17", 3, tag) is None  # nor is an untagged one this run's
    assert block_of(f"LR003R{tag[:6]}B17", 3, tag[:6]) is None  # the tag has 8 digits


def test_seqs_read_as_block_and_record() -> None:
    assert seq_text(5 * 2**32 + 31) == "block 5, record 31"
    assert seq_text(21474836511) == "block 5, record 31"
    assert seq_text(31) == "record 31"
    assert seq_text(-1) == "no record"


def test_a_compiled_procedure_gives_its_step_ids_back() -> None:
    steps = [
        ChannelStep(
            41, "cc", "charge", current_A=0.001, ends=(EndCondition("voltage", ">=", 3.6),)
        ),
        ChannelStep(42, "rest", "rest", ends=(EndCondition("time", ">=", 60.0),)),
    ]
    xml = compile_block(steps).xml.decode()
    assert step_ids_of(xml).tolist() == [41, 42, -1]
    assert step_ids_of("not xml <").tolist() == [-1]
    assert step_ids_of(xml.replace("rest #42", "by hand")).tolist() == [41, -1, -1]


def test_a_test_info_reply_is_checked() -> None:
    info = decode_test_info({"TestName": "LR000B2  ", "ProcName": "LR000B2 "}, b"(4,6)")
    assert (info.test_name, info.proc_name) == ("LR000B2", "LR000B2")
    assert decode_test_info({"TestName": "x"}, b"(4,6)").proc_name == ""
    with pytest.raises(InstrumentProtocolError, match="TestName"):
        decode_test_info({"TestName": 3}, b"(4,6)")

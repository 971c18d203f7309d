"""labrig's MACCOR driver against an independent MacNet server: pymacnet's MaccorSpoofer.

What the spoofer can do, as shipped: it listens on the JSON and binary ports (threads,
blocking sockets), answers pretty-printed JSON ending ``\\r\\n``, keeps a settable
status per channel for (4,7), and returns canned replies for (1,1), (1,2), (4,1), (4,4),
(6,2), (6,5), (6,7), (6,8), (6,9) and an echo for (6,10). What it cannot: it answers
every request with the id 1987 (JSON-RPC says the request's id), treats each received
chunk as one whole request, and has no (1,6)/(1,7) file transfer, suspend/resume or
start errors, so no test procedure can run on it.

The first test shows labrig's driver refusing the canned id (it never takes an answer
for another request). The second runs a whole block on the spoofer's server, with a
scripted tester in its request handler supplying exactly the missing parts: the id
echo, request framing, a procedure folder, and a data file whose records a script
writes in the MACCOR export layout, advancing one record per status poll.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pymacnet.maccorspoofer import MaccorSpoofer
from pymacnet.maccorspoofer.MaccorSpoofer import ChannelData, _JsonWorker

from labrig.drivers.capabilities import (
    ChannelLimits,
    ChannelState,
    ChannelStep,
    EndCondition,
    InstrumentProtocolError,
    RecordRule,
)
from labrig.drivers.maccor import MaccorCycler

HEADER = "Rec#\tCyc#\tStep\tTestTime\tStepTime\tAmp-hr\tWatt-hr\tAmps\tVolts\tState\tES\tTemp1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout_s: float = 20.0) -> None:
    """Wait until something accepts connections on ``port`` (a busy machine can take a
    while to schedule the spoofer's server thread)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Script:
    """The scripted tester: steps of (state, records, V from, V to, |I|); a status poll
    moves the running test on by one record (10 s)."""

    def __init__(self, steps: list[tuple[str, int, float, float, float]]) -> None:
        self.steps = steps
        self.files: dict[str, str] = {}
        self.test: str | None = None
        self.rows: list[str] = []
        self.pos = 0  # records written
        self.lock = threading.Lock()

    def total(self) -> int:
        return sum(n for _, n, *_ in self.steps)

    def advance(self) -> dict[str, Any]:
        """One record further; the (4,7) fields that change."""
        if self.test is None:
            return {"Stat": 0, "RF1": 0, "RF2": 0}
        if self.pos < self.total():
            self.rows.append(self._row(self.pos))
            self.pos += 1
        done = self.pos >= self.total()
        step, k = self._where(max(self.pos - 1, 0))
        state = self.steps[step][0]
        return {
            "Stat": 4 if done else 2, "RF1": 31 if done else (1 if state == "C" else 2),
            "RF2": 193 if done else 0, "LastRecNum": self.pos, "Step": step + 1,
            "TestTime": 10.0 * self.pos, "StepTime": 10.0 * (k + 1),
        }  # fmt: skip

    def _where(self, n: int) -> tuple[int, int]:
        for step, (_, count, *_) in enumerate(self.steps):
            if n < count:
                return step, n
            n -= count
        return len(self.steps) - 1, self.steps[-1][1] - 1

    def _row(self, n: int) -> str:
        step, k = self._where(n)
        state, count, v0, v1, amps = self.steps[step]
        v = v0 + (v1 - v0) * (k + 1) / count
        ah = amps * 10.0 * (k + 1) / 3600.0
        es = 133 if k == count - 1 else 0  # the last record of a step ended it on voltage
        return (f"{n + 1}\t0\t{step + 1}\t{10.0 * (n + 1):.1f}\t{10.0 * (k + 1):.1f}\t{ah:.9f}"
                f"\t{ah * v:.9f}\t{amps:.6f}\t{v:.6f}\t{state}\t{es}\t25.0")  # fmt: skip


class ScriptedWorker(_JsonWorker):  # type: ignore[misc]
    """The spoofer's JSON worker, with what labrig needs and the spoofer lacks."""

    script: Script

    def __init__(self, s: socket.socket, channel_data: ChannelData) -> None:
        self._buf = b""
        self._data = channel_data
        super().__init__(s, channel_data)

    def _process_client_msg(self, rx_msg: bytes) -> bytes:
        self._buf += rx_msg
        try:
            msg = json.loads(self._buf)
        except ValueError:
            return b""  # a request split over several reads: wait for the rest
        raw, self._buf = self._buf, b""
        p = msg["params"]
        key = (p["FClass"], p["FNum"])
        sc = self.script
        with sc.lock:
            if key == (1, 6):
                sc.files[p["FileName"]] = p["Data"]
                return _reply(msg, {"FileName": p["FileName"], "Result": "OK"})
            if key == (1, 7):
                data = HEADER + "\r\n" + "".join(r + "\r\n" for r in sc.rows[p["Offset"] :])
                n = len(sc.rows) - p["Offset"]
                return _reply(msg, {"FileName": p["FileName"], "Len": n, "Data": data})
            if key == (6, 2):
                if f"{p['ProcName']}.000" not in sc.files:
                    return _reply(msg, {"Result": "Procedure not found"})
                sc.test, sc.rows, sc.pos = p["TestName"], [], 0
            if key == (6, 5):
                sc.test = None
                self._data.update_channel_status(p["Chan"], {"Stat": 0, "RF1": 0})
            if key == (4, 7):
                self._data.update_channel_status(p["Chan"], sc.advance())
        out = json.loads(super()._process_client_msg(raw))  # the spoofer's own reply
        out["id"] = msg["id"]  # JSON-RPC: the reply carries the request's id
        return (json.dumps(out, indent=4) + "\r\n").encode()


def _reply(msg: dict[str, Any], result: dict[str, Any]) -> bytes:
    p = msg["params"]
    head = {"FClass": p["FClass"], "FNum": p["FNum"], "Chan": p["Chan"]}
    body = {"jsonrpc": "2.0", "result": {**head, **result}, "id": msg["id"]}
    return (json.dumps(body, indent=4) + "\r\n").encode()


def _spoofer(worker: type | None) -> Iterator[tuple[MaccorSpoofer, int]]:
    # ChannelData keeps its statuses in a class-level list: start each spoofer afresh
    ChannelData._ChannelData__chan_status_list.clear()
    port = _free_port()
    cfg = {"server_ip": "127.0.0.1", "json_port": port, "tcp_port": _free_port(),
           "num_channels": 4}  # fmt: skip
    spoofer = MaccorSpoofer(cfg)
    if worker is not None:  # the same server loop, with our request handler
        spoofer._MaccorSpoofer__json_server_thread = threading.Thread(
            target=spoofer._MaccorSpoofer__server_loop,
            args=({"ip": "127.0.0.1", "port": port}, worker), daemon=True,
        )  # fmt: skip
    spoofer.start()
    _wait_listening(port)  # its server threads bind after start() returns
    try:
        yield spoofer, port
    finally:
        spoofer.stop()


@pytest.fixture
def plain() -> Iterator[tuple[MaccorSpoofer, int]]:
    yield from _spoofer(None)


@pytest.fixture
def scripted() -> Iterator[tuple[Script, int]]:
    script = Script([("C", 12, 3.0, 3.68, 0.00084), ("D", 15, 3.6, 2.28, 0.00084)])
    ScriptedWorker.script = script
    for _, port in _spoofer(ScriptedWorker):
        yield script, port


async def test_the_plain_spoofer_answers_another_requests_id_and_labrig_says_so(
    plain: tuple[MaccorSpoofer, int],
) -> None:
    _, port = plain
    async with MaccorCycler.from_url(f"tcp://127.0.0.1:{port}", channels=[0], timeout_s=2.0,
                                     retries=0, reconnect_s=2.0) as cyc:  # fmt: skip
        with pytest.raises(InstrumentProtocolError, match="answers id 1987, not 1"):
            await cyc.system_info()


async def test_labrig_runs_a_block_on_the_spoofers_server(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    rec = RecordRule(every_s=10.0)
    steps = [
        ChannelStep(5, "cc", "charge", current_A=0.00084,
                    ends=(EndCondition("voltage", ">=", 3.68),), record=rec),
        ChannelStep(6, "cc", "discharge", current_A=-0.00084,
                    ends=(EndCondition("voltage", "<=", 2.28),), record=rec),
    ]  # fmt: skip
    async with MaccorCycler.from_url(f"tcp://127.0.0.1:{port}", channels=[1],
                                     timeout_s=3.0) as cyc:  # fmt: skip
        ch = cyc.channel(1)
        await ch.set_limits(ChannelLimits(2.0, 3.9, 0.01))
        assert (await ch.get_limits()).v_max_V == 3.9  # the spoofer's echo
        await ch.start_block(1, steps)
        assert "LR001B1.000" in script.files and "<MaccorTestProcedure" in script.files[
            "LR001B1.000"]  # fmt: skip
        res = await ch.wait_block(poll_s=0.01)
        assert res.state == ChannelState.done, res
        assert [(e.step_id, e.reason, e.action) for e in res.steps] == [
            (5, "voltage", "next"), (6, "voltage", "next")]  # fmt: skip
        assert res.steps[0].end_voltage_V == pytest.approx(3.68)
        assert res.steps[1].charge_Ah == pytest.approx(-0.00084 * 150 / 3600, rel=1e-6)
        batch = await ch.read_records(0)
        assert len(batch) == 27 and batch.seq.tolist() == [(1 << 32) + k for k in range(1, 28)]
        assert batch.step_id.tolist() == [5] * 12 + [6] * 15
        assert (batch.current_A[:12] > 0).all() and (batch.current_A[12:] < 0).all()
        await ch.safe_state()
        assert script.test is None

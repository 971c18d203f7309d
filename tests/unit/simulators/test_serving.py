"""The simulators' one serving shell: TCP and pseudo-terminal serving, fault manipulators
in both directions, connection bookkeeping, owned tasks and closing - with a toy device."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import pytest

from labrig.simulators._serving import Link, Replying, SimServer, serve
from labrig.simulators.clock import loop_clock, scaled_clock
from labrig.simulators.faults import Delay, Disconnect, Drop, ReplyFaults, Split, Stall
from tests.helpers import run_virtual_strict


class Upper:
    """A request/reply device: every line comes back in capitals, with the time."""

    def __init__(self) -> None:
        self.fed: list[bytes] = []
        self._buf = b""

    def feed(self, data: bytes, now: float) -> list[bytes]:
        self.fed.append(data)
        self._buf += data
        out = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            out.append(line.upper() + f" {now:g}\n".encode())
        return out


class Ticker:
    """A session that talks on its own: a task per link sends a tick every second."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0

    def open_session(self, link: Link) -> Ticker:
        link.start(self._tick(link), name=f"ticker-{link.number}")
        return self

    async def _tick(self, link: Link) -> None:
        self.started += 1
        try:
            for k in range(10**6):
                link.send(f"tick {k}\n".encode())
                await asyncio.sleep(1.0)
        finally:
            self.ended += 1

    def received(self, data: bytes) -> None:
        if data.startswith(b"boom"):
            raise RuntimeError("device bug")

    def closed(self) -> None:
        pass


async def _talk(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.removeprefix("tcp://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def test_replies_over_tcp_on_the_loop_clock() -> None:
    async def main() -> tuple[bytes, bytes, int]:
        dev = Upper()
        async with await serve(Replying(dev)) as srv:
            assert srv.address.startswith("tcp://127.0.0.1:")
            r, w = await _talk(srv.address)
            await asyncio.sleep(5.0)
            w.write(b"hello\nwor")
            first = await r.readline()
            w.write(b"ld\n")
            second = await r.readline()
            await _close(w)
            return first, second, srv.connections

    first, second, connections = run_virtual_strict(main())
    assert first == b"HELLO 5\n" and second == b"WORLD 5\n"
    assert connections == 1


def test_tx_faults_keep_order_stall_a_link_and_hang_up() -> None:
    async def main() -> list[object]:
        dev = Upper()
        delay, stall = Delay(delay_s=2.0, count=1), Stall(start=2, count=1)
        async with await serve(Replying(dev), manipulators=[delay, stall]) as srv:
            loop = asyncio.get_running_loop()
            r, w = await _talk(srv.address)
            t0 = loop.time()
            w.write(b"a\nb\n")  # a is 2 s late; b comes after it, never before
            got = [await r.readline(), await r.readline(), loop.time() - t0]
            w.write(b"c\nd\n")  # c stalls the line for good: d stays behind it
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(60.0):
                    await r.readline()
            await _close(w)
            r2, w2 = await _talk(srv.address)  # a new connection is a new line
            w2.write(b"e\n")
            got.append(await r2.readline())
            srv.manipulators.append(Disconnect(count=1))
            w2.write(b"f\n")
            got.append(await r2.read())  # hung up instead of the reply
            await _close(w2)
            got.append(srv.connections)
            return got

    a, b, late, e, after_hang_up, connections = run_virtual_strict(main())
    assert (a, b) == (b"A 0\n", b"B 0\n") and late == pytest.approx(2.0)
    assert e.startswith(b"E ") and after_hang_up == b"" and connections == 2


def test_rx_faults_reach_the_device_changed() -> None:
    async def main() -> list[bytes]:
        dev = Upper()
        split = Split(size=2, directions=("rx",))
        drop = Drop(directions=("rx",), start=1, count=1)
        async with await serve(Replying(dev), manipulators=[drop, split]) as srv:
            r, w = await _talk(srv.address)
            w.write(b"abcde\n")
            assert await r.readline() == b"ABCDE 0\n"
            await asyncio.sleep(0.1)
            w.write(b"lost\n")  # the device never hears this one
            await asyncio.sleep(0.1)
            w.write(b"xy\n")
            assert (await r.readline()).startswith(b"XY ")
            await _close(w)
        return dev.fed

    fed = run_virtual_strict(main())
    assert fed == [b"ab", b"cd", b"e\n", b"xy", b"\n"]


def test_reply_faults_are_a_manipulator() -> None:
    faults = ReplyFaults(seed=1)
    assert faults.transform("tx", b"abc") == [(0.0, b"abc")]
    faults.delay_s = 1.5
    assert faults.transform("tx", b"abc") == [(1.5, b"abc")]
    assert faults.transform("rx", b"abc") == [(0.0, b"abc")]  # replies only
    faults.truncate_to = 0
    assert faults.transform("tx", b"abc") == []
    faults.clear()
    faults.drop_next = 1
    assert faults.transform("tx", b"abc") == [] and faults.dropped == 1
    assert faults.transform("tx", b"abc") == [(0.0, b"abc")]


def test_one_host_at_a_time_and_dropped_connections() -> None:
    async def main() -> tuple[bytes, int, int]:
        srv = SimServer(Replying(Upper()), one_host=True)
        async with srv:
            await srv.listen_tcp()
            r1, w1 = await _talk(srv.address)
            await asyncio.sleep(0.1)
            r2, w2 = await _talk(srv.address)  # takes the line from the first host
            first_gone = await r1.read()
            await asyncio.sleep(0.1)
            live = len(srv.links)
            srv.drop_connections()
            assert await r2.read() == b""
            await asyncio.sleep(0.1)
            await _close(w1)
            await _close(w2)
            return first_gone, live, len(srv.links)

    first_gone, live, after = run_virtual_strict(main())
    assert first_gone == b"" and live == 1 and after == 0


def test_link_tasks_end_with_their_link_and_all_with_the_server() -> None:
    async def main() -> tuple[int, int, list[bytes]]:
        dev = Ticker()
        async with SimServer(dev) as srv:
            await srv.listen_tcp()
            r1, w1 = await _talk(srv.address)
            r2, w2 = await _talk(srv.address)
            ticks = [await r1.readline(), await r1.readline(), await r2.readline()]
            await _close(w1)
            await asyncio.sleep(2.5)
            assert dev.started == 2 and dev.ended == 1  # the first link's task is gone
        await _close(w2)
        return dev.started, dev.ended, ticks

    started, ended, ticks = run_virtual_strict(main())  # and no task leaks
    assert (started, ended) == (2, 2)
    assert ticks == [b"tick 0\n", b"tick 1\n", b"tick 0\n"]


def test_a_device_failure_is_logged_and_hangs_up(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> bytes:
        async with SimServer(Ticker()) as srv:
            await srv.listen_tcp()
            r, w = await _talk(srv.address)
            await r.readline()
            w.write(b"boom\n")
            rest = await r.read()
            await _close(w)
            return rest

    with caplog.at_level(logging.ERROR, logger="labrig.simulators"):
        rest = run_virtual_strict(main())
    assert b"tick" not in rest.split(b"\n")[-1]
    assert any("device bug" in (r.exc_text or "") for r in caplog.records)


def test_tasks_start_only_while_serving() -> None:
    async def main() -> None:
        srv = SimServer(Ticker())

        async def nothing() -> None:
            pass

        with pytest.raises(RuntimeError, match="not serving"):
            srv.start(nothing(), name="early")
        async with srv:
            pass
        with pytest.raises(RuntimeError, match="not serving"):
            srv.start(nothing(), name="late")

    run_virtual_strict(main())


async def test_a_pseudo_terminal_is_served_and_closed() -> None:
    async with await serve(Replying(Upper()), transport="pty", baudrate=19200) as srv:
        assert srv.address.startswith("serial:///dev/pts/") and srv.address.endswith("=19200")
        path = srv.address.removeprefix("serial://").split("?")[0]
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"pty\n")
            got = b""
            async with asyncio.timeout(5.0):
                while not got.endswith(b"\n"):
                    await asyncio.sleep(0.001)
                    with contextlib.suppress(BlockingIOError):
                        os.set_blocking(fd, False)
                        got += os.read(fd, 100)
        finally:
            os.close(fd)
        assert got.startswith(b"PTY ")
        srv.drop_connections()  # a serial line cannot be hung up: nothing happens
        assert len(srv.links) == 1
    assert srv.links == ()


def test_the_clocks() -> None:
    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        fast, same = scaled_clock(10.0), scaled_clock()
        t0 = fast()
        await asyncio.sleep(3.0)
        return fast() - t0, same() - loop.time(), loop_clock(lambda: 7.0)()

    dt, diff, fixed = run_virtual_strict(main())
    assert dt == pytest.approx(30.0) and diff == 0.0 and fixed == 7.0
    with pytest.raises(ValueError, match="speed"):
        asyncio.run(_scaled(0.0))


async def _scaled(speed: float) -> None:
    scaled_clock(speed)

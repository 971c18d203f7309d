"""Transports over real loopback TCP and a real pseudo-terminal, on the virtual clock."""

from __future__ import annotations

import asyncio
import os

import pytest

from labrig.drivers.capabilities import InstrumentTimeout
from labrig.drivers.transport import (
    SerialTransport,
    TcpTransport,
    TransportClosed,
    transport_from_url,
)
from labrig.simulators.faults import Corrupt, Disconnect, Drop, Split
from tests.helpers import run_virtual_strict


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


def test_url_parsing_and_errors() -> None:
    t = transport_from_url("tcp://127.0.0.1:5025")
    assert isinstance(t, TcpTransport) and t.address == "tcp://127.0.0.1:5025"
    s = transport_from_url("serial:///dev/ttyUSB0?baudrate=230400&parity=n")
    assert isinstance(s, SerialTransport) and s.settings["baudrate"] == 230400
    assert s.settings["parity"] == "N"
    assert transport_from_url("visa://TCPIP::127.0.0.1::5025::SOCKET").address.startswith("visa")
    for bad, why in [
        ("localhost:80", "no scheme"),
        ("tcp://host", "host:port"),
        ("serial:///dev/x?speed=9", "unknown serial setting"),
        ("gopher://x", "unknown scheme"),
    ]:
        with pytest.raises(ValueError, match=why):
            transport_from_url(bad)


def test_tcp_query_deadline_and_manipulators() -> None:
    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        split = Split(size=2, directions=("tx", "rx"))
        async with transport_from_url(f"tcp://127.0.0.1:{port}", manipulators=[split]) as t:
            assert await t.query(b"hello\n") == b"HELLO\n"
            assert split.applied >= 2
            await t.write(b"abcdef")
            assert await t.read_exactly(3) == b"ABC"
            assert await t.read_until(b"F") == b"DEF"
            assert await t.read_available() == b""
            # a swallowed request: the deadline, not a hang
            t.manipulators = [Drop(directions=("tx",))]
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(InstrumentTimeout):
                await t.query(b"lost\n", timeout_s=1.5)
            assert loop.time() - start == pytest.approx(1.5)
            t.manipulators = [Corrupt(seed=3, directions=("rx",))]
            assert await t.query(b"x\n") != b"X\n"
            t.manipulators = [Disconnect(directions=("tx",))]
            with pytest.raises(TransportClosed):
                await t.write(b"bye\n")
            assert not t.is_open
            t.manipulators = []
            await t.reconnect(give_up_after=5)
            assert t.is_open and t.reconnects == 1
            assert await t.query(b"back\n") == b"BACK\n"
        await asyncio.sleep(0.1)  # let the echo handlers see the end of their streams
        server.close()
        await server.wait_closed()

    run_virtual_strict(main())


def test_reconnect_backs_off_then_gives_up() -> None:
    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        t = TcpTransport("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TransportClosed, match="no link"):
            await t.reconnect(give_up_after=3.0)
        # waits of 0.1, 0.2, 0.4, 0.8 s fit in 3 s; the next (1.6 s) would not: give up
        assert loop.time() - start == pytest.approx(1.5)
        assert t.reconnects == 0

    run_virtual_strict(main())


def test_serial_transport_on_a_pty() -> None:
    async def main() -> None:
        master, slave = os.openpty()
        path = os.ttyname(slave)
        try:
            async with transport_from_url(f"serial://{path}?baudrate=230400") as t:
                os.write(master, b"t\n")
                assert await t.read_until(b"\n") == b"t\n"
                await t.write(b"ping\n")
                await asyncio.sleep(0.01)
                assert os.read(master, 100) == b"ping\n"
                with pytest.raises(InstrumentTimeout):
                    await t.read_until(b"\n", t.deadline(0.5))
        finally:
            os.close(master)
            os.close(slave)

    run_virtual_strict(main())

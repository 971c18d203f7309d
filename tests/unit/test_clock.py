from __future__ import annotations

import asyncio
import os
import time
import tty

from labrig.orchestrator.clock import Clock
from tests.helpers import run_virtual_strict


def test_virtual_clock_jumps_over_long_sleeps() -> None:
    async def main() -> tuple[float, float]:
        clock = Clock()
        t0 = time.perf_counter()
        for _ in range(1000):
            await asyncio.sleep(3600.0)
        return clock.elapsed(), time.perf_counter() - t0

    simulated, wall = run_virtual_strict(main())
    assert simulated == 1000 * 3600.0
    assert wall < 30  # sanity only: 1000 simulated hours never take real hours


def test_virtual_clock_waits_for_io_and_threads() -> None:
    async def main() -> tuple[bytes, float]:
        clock = Clock()

        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readline())
            await w.drain()
            w.close()
            await w.wait_closed()

        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        t0 = clock.now()
        w.write(b"ping\n")
        line = await asyncio.wait_for(r.readline(), 5.0)
        await asyncio.to_thread(time.sleep, 0.01)
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
        return line, clock.now() - t0

    line, elapsed = run_virtual_strict(main())
    assert line == b"ping\n"
    assert elapsed < 1.0  # no timeout fired while data or a thread was on its way


def test_virtual_deadline_fires_in_simulated_time() -> None:
    async def main() -> float:
        clock = Clock()
        t0 = clock.now()
        try:
            async with asyncio.timeout(5.0):
                await asyncio.Event().wait()
        except TimeoutError:
            pass
        return clock.now() - t0

    assert abs(run_virtual_strict(main()) - 5.0) < 1e-6


def test_wall_clock_follows_virtual_time() -> None:
    async def main() -> float:
        clock = Clock()
        w0 = clock.wall()
        await asyncio.sleep(86400.0)
        return clock.wall() - w0

    assert abs(run_virtual_strict(main()) - 86400.0) < 1e-3


def test_virtual_clock_waits_for_bytes_inside_a_pseudo_terminal() -> None:
    """Round trips over a pty with a 1 s (virtual) deadline each and no grace: epoll sees
    a pty's bytes only after the kernel's tty worker ran; the loop polls its terminals
    before each jump, so no deadline fires while bytes are on their way."""

    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)
        for fd in (master, slave):
            os.set_blocking(fd, False)
        got: dict[int, asyncio.Queue[bytes]] = {master: asyncio.Queue(), slave: asyncio.Queue()}
        for fd in (master, slave):
            loop.add_reader(fd, lambda fd=fd: got[fd].put_nowait(os.read(fd, 1 << 16)))
        t0 = loop.time()
        done = 0
        try:
            for k in range(400):
                payload = bytes([65 + k % 26]) * (1 + 97 * (k % 50))  # up to ~4.8 kB
                for src, dst in ((master, slave), (slave, master)):
                    os.write(src, payload)
                    data = b""
                    async with asyncio.timeout(1.0):
                        while len(data) < len(payload):
                            data += await got[dst].get()
                    assert data == payload
                done += 1
        finally:
            for fd in (master, slave):
                loop.remove_reader(fd)
                os.close(fd)
        return done, loop.time() - t0

    done, elapsed = run_virtual_strict(main())
    assert done == 400
    assert elapsed == 0.0  # no timer was due, so the clock never had a reason to move

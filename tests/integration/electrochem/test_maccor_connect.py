"""Opening a MacNet link: a connect whose handshake is not answered in time (a tester or
host busy with a station's worth of connections) is tried again for up to
``reconnect_s``; a refused one (nothing listens there) fails at once."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from labrig.drivers.capabilities import InstrumentTimeout
from labrig.drivers.maccor.client import MacNetClient
from labrig.drivers.transport import TcpTransport, TransportClosed
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict


class BusyAtFirst(TcpTransport):
    """A link whose first ``busy`` handshakes go unanswered."""

    def __init__(self, url: str, busy: int) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        super().__init__(parts.hostname, parts.port, timeout=5.0)
        self.busy = busy
        self.tries = 0

    async def _connect(self, deadline: float) -> None:
        self.tries += 1
        if self.tries <= self.busy:
            await asyncio.sleep(3600.0)  # cut short by the connect's deadline
        await super()._connect(deadline)


def test_a_connect_that_times_out_is_tried_again() -> None:
    async def main() -> tuple[int, dict[str, object]]:
        async with serve_maccor(1) as srv:
            link = BusyAtFirst(srv.url, busy=3)
            client = MacNetClient(link, reconnect_s=60.0)
            await client.open()
            try:
                return link.tries, await client.call(1, 1, 0)
            finally:
                await client.close()

    tries, version = run_virtual_strict(main())
    assert tries == 4 and version["FClass"] == 1


def test_a_tester_busy_for_longer_than_reconnect_s_is_a_timeout() -> None:
    async def main() -> tuple[int, float]:
        async with serve_maccor(1) as srv:
            link = BusyAtFirst(srv.url, busy=1000)
            client = MacNetClient(link, reconnect_s=30.0)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(InstrumentTimeout, match="timed out"):
                await client.open()
            return link.tries, loop.time() - t0

    tries, waited = run_virtual_strict(main())
    assert tries > 1 and 30.0 <= waited < 45.0


def test_a_refused_connect_fails_at_once() -> None:
    async def main() -> tuple[float, str]:
        client = MacNetClient(TcpTransport("127.0.0.1", 1, timeout=5.0), reconnect_s=60.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TransportClosed) as err:
            await client.open()
        return loop.time() - t0, str(err.value)

    waited, message = run_virtual_strict(main())
    assert waited < 1.0 and "127.0.0.1:1" in message

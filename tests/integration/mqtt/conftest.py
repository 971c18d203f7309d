"""A private Mosquitto per test, on a free port, with a password file and the shipped ACL.

Tests that need a broker take the ``broker`` (persistence off) or ``make_broker``
fixture; they are skipped, with the reason, only when the mosquitto binary is absent.
Tests of pure codecs need no broker and always run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from labrig.orchestrator.mqtt.testing import LocalMosquitto, mosquitto_binary

MakeBroker = Callable[..., LocalMosquitto]


@pytest.fixture(autouse=True)
async def _stop_default_executor(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """aiomqtt connects, and the publisher waits in real time, on the loop's default
    executor; end its worker threads with the test so the suite's thread check holds."""
    yield
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[MakeBroker]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto binary not found (install the 'mosquitto' package)")
    started: list[LocalMosquitto] = []

    def make(*, persistence: bool = False, name: str = "broker") -> LocalMosquitto:
        broker = LocalMosquitto(tmp_path / name, persistence=persistence)
        broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop(kill=True)


@pytest.fixture
def broker(make_broker: MakeBroker) -> LocalMosquitto:
    return make_broker()

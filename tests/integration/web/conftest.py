"""Fixtures of the web tests: a private Mosquitto, and a finished dry run to look at."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from labrig.orchestrator.mqtt.testing import LocalMosquitto, mosquitto_binary
from labrig.orchestrator.runner import RunRequest, execute_run
from labrig.orchestrator.station import INPROCESS_STATION
from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text
from tests.helpers import run_virtual_strict

from .support import protocol_text

EIS = "EIS from 10 kHz to 0.1 Hz, 5 per decade, 10 mV amplitude at OCV"


@pytest.fixture(autouse=True)
async def _stop_default_executor(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Worker threads of asyncio.to_thread end with the test (the suite's thread check)."""
    yield
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto binary not found (install the 'mosquitto' package)")
    b = LocalMosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop(kill=True)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A dry run of 3 cycles and an EIS sweep (virtual clock): (runs dir, run id)."""
    runs = tmp_path_factory.mktemp("web-runs") / "runs"
    text = protocol_text(
        "web-cycles",
        ["repeat: 3\n    steps:\n      - Charge at 1C until 3.7 V or 2 h\n"
         "      - Discharge at 1C until 2.0 V or 2 h", EIS],
        every_s=30,
        cell="A1",
    )  # fmt: skip
    proto = load_protocol_text(text)
    req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=runs,
                     station=INPROCESS_STATION)  # fmt: skip
    outcome, root = run_virtual_strict(execute_run(req))
    assert outcome.state.value == "finished"
    return runs, root.name

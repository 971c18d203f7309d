"""Helpers of the web tests: the app served by a real uvicorn on loopback, a daemon with a
simulated station on the real clock, short protocols, sign-in."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from labrig.orchestrator.daemon import Daemon
from labrig.orchestrator.executor import RunOptions
from labrig.orchestrator.mqtt import MqttSettings
from labrig.orchestrator.mqtt.testing import LocalMosquitto, free_port
from labrig.orchestrator.station import INPROCESS_STATION, StationConfig
from labrig.orchestrator.web import UserStore, WebConfig, create_app, set_user

#: Debian's Chromium, headless. Its new headless mode starts, for every window, a renderer
#: for the address bar's WebUI pop-up (as much CPU as the page itself) that no page of
#: ours needs: turned off, so the tests share the machine's cores with less.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup",
]
STATION = "rig-a"  # the station account of the shipped ACL example
PASSWORDS = {"olga": "operator-pw-1", "vera": "viewer-pw-1"}

HEAD = """
name: {name}
cell: {{cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200, cell_id: {cell}}}
limits: {{voltage_V: [1.95, 3.75], current_abs_mA: 5.0}}
defaults: {{record: {{every_s: {every}}}}}
sequence:
"""


def protocol_text(name: str, steps: list[str], every_s: float = 1.0, cell: str = "W1") -> str:
    return HEAD.format(name=name, every=every_s, cell=cell) + "".join(f"  - {s}\n" for s in steps)


def users_file(folder: Path) -> Path:
    path = folder / "users"
    set_user(path, "olga", "operator", PASSWORDS["olga"])
    set_user(path, "vera", "viewer", PASSWORDS["vera"])
    return path


def web_config(runs: Path, broker: LocalMosquitto | None, *, auth: bool = True,
               mqtt_user: str = "operator", **kw: Any) -> WebConfig:  # fmt: skip
    mqtt = None
    if broker is not None:
        mqtt = MqttSettings.from_url(broker.url(mqtt_user), station="web")
    return WebConfig(
        runs_dir=runs,
        mqtt=mqtt,
        users=UserStore.from_file(users_file(runs.parent)) if auth else None,
        audit_path=runs.parent / "audit.jsonl",
        work_dir=runs.parent / "work",
        daemon_poll_s=0.5,
        batch_s=0.1,
        **{"cache_dir": runs.parent / "cache", **kw},
    )


@contextlib.asynccontextmanager
async def serving(config: WebConfig) -> AsyncIterator[str]:
    """The app on a free loopback port for the duration; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve(), name="uvicorn")
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def daemon(
    runs: Path, broker: LocalMosquitto | None, station: StationConfig | None = None
) -> AsyncIterator[Daemon]:
    """A scheduler daemon of ``runs`` on the simulated station, real clock, MQTT to ``broker``."""
    d = Daemon(
        station=station or INPROCESS_STATION.model_copy(update={"name": STATION}),
        runs_dir=runs,
        sim=True,
        mqtt_url=broker.url(STATION) if broker is not None else None,
        install_signals=False,
        run_options=RunOptions(poll_s=0.5),
        stop_grace_s=5.0,
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(d.run(), name="daemon")
        async with asyncio.timeout(30):
            await d.ready.wait()
        try:
            yield d
        finally:
            d.signal("test")
            d.signal("test")  # twice: every run to its safe state at once
            async with asyncio.timeout(60):
                await task


async def sign_in(client: httpx.AsyncClient, name: str) -> str:
    """Sign ``name`` in on ``client``; returns the session's CSRF token."""
    page = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None, page.text
    r = await client.post(
        "/login",
        data={"csrf": csrf.group(1), "username": name, "password": PASSWORDS[name], "next": "/"},
    )
    assert r.status_code == 303, r.text
    home = await client.get("/")
    token = re.search(r'name="labrig-csrf" content="([^"]+)"', home.text)
    assert token is not None
    return token.group(1)


async def wait_until(predicate: Any, within_s: float = 30.0, every_s: float = 0.1) -> None:
    """Poll ``await predicate()`` (an HTTP question: nothing to wait on but time)."""
    async with asyncio.timeout(within_s):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(every_s)


def submit(d: Daemon, steps: list[str], position: str, cell: str, every_s: float = 0.5) -> str:
    """A run of ``steps`` queued on the daemon's scheduler for ``position``."""
    from labrig.orchestrator.scheduler import RunSpec
    from labrig.protocols.loader import load_protocol_text

    assert d.scheduler is not None
    text = protocol_text(f"web-{cell.lower()}", steps, every_s=every_s, cell=cell)
    spec = RunSpec(protocol=load_protocol_text(text), protocol_yaml=text, position=position)
    return d.scheduler.submit(spec).run_id

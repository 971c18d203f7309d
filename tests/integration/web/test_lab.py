"""``labrig web --lab``: the lab database as the web app's source, in Chromium.

A fresh lab database on the PostgreSQL at 127.0.0.1:5432 (``$LABRIG_TEST_PG``; skipped
with the reason when none answers), a private Mosquitto, one real agent in this process
(``rig-a``: simulated MACCOR channels on the real clock, publishing on MQTT), and, written
into the database as their agents would have, an agent whose heartbeat stopped (``pc-b``)
and two runs of ``pc-c`` sharing the potentiostat of ``eis-pc`` (one holds it, one waits).
The web app signs in with a login of its own that is a lab operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from labrig.orchestrator.executor import RunOptions
from labrig.orchestrator.lab import client
from labrig.orchestrator.lab.agent import LabAgent
from labrig.orchestrator.lab.config import agent_config_from_dict
from labrig.orchestrator.lab.db import connect
from labrig.orchestrator.lab.testing import TempLab, server_reachable
from labrig.orchestrator.mqtt import MqttSettings
from labrig.orchestrator.mqtt.testing import LocalMosquitto
from labrig.orchestrator.web import UserStore, WebConfig, set_user
from labrig.protocols.loader import load_protocol_text

from .support import CHROMIUM_ARGS, serving, sign_in, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = CHROMIUM_ARGS
pytestmark = [pytest.mark.timeout(300)]

PROTOCOL = """\
name: lab web {tag}
cell: {{cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 190, cell_id: {cell}}}
limits: {{voltage_V: [2.0, 3.8], current_abs_mA: 10}}
defaults: {{record: {{every_s: 0.5}}}}
sequence:
  - repeat: 200
    steps: [Charge at 0.1C until 3.7 V or 4 s, Rest for 2 s]
"""


@pytest.fixture
def lab() -> Iterator[TempLab]:
    why = server_reachable()
    if why is not None:
        pytest.skip(f"no PostgreSQL for the lab tests: {why}")
    with TempLab() as t:
        yield t


def _sql(lab: TempLab, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with connect(lab.url) as conn:
        for sql, args in statements:
            conn.execute(sql, args)


def _submit(lab: TempLab, position: str, cell: str, **kw: Any) -> str:
    text = PROTOCOL.format(tag=cell.lower(), cell=cell)
    run_id = f"w-{cell.lower()}-{secrets.token_hex(3)}"
    client.submit(lab.url, load_protocol_text(text), text, run_id=run_id, position=position, **kw)
    return run_id


def _agent_rows(lab: TempLab, name: str, positions: list[str], heartbeat: str) -> None:
    """An agent and its positions as ``registry.register`` writes them; ``heartbeat``: an
    SQL time expression."""
    _sql(lab, (f"INSERT INTO agents (name, host, heartbeat_s, heartbeat_at, state) VALUES "
               f"(%s, 'test', 5, {heartbeat}, 'online')", (name,)))  # fmt: skip
    for p in positions:
        _sql(lab, ("INSERT INTO positions (agent, name, kind, cycler) VALUES (%s, %s, 'cell', %s)",
                   (name, p, f"cycler/{p[-1]}")))  # fmt: skip


def _running(lab: TempLab, run_id: str, cycle: int, step: str) -> None:
    """A run as the agent's mirror leaves it once it runs."""
    _sql(lab, ("DELETE FROM queue WHERE run_id = %s", (run_id,)),
         ("UPDATE runs SET state = 'running', claimed_at = now() - interval '1 hour', "
          "started_at = now() - interval '1 hour', cycle = %s, step = %s, eta_s = 7200, "
          "status_at = extract(epoch FROM now()) WHERE run_id = %s",
          (cycle, step, run_id)))  # fmt: skip


def build_lab(lab: TempLab) -> dict[str, str]:
    """pc-b: heartbeat stopped 10 min ago, a run on b0; pc-c: c0 holds eis-pc:eis/0,
    c1 waits for it; a run queued on rig-a for tomorrow."""
    _agent_rows(lab, "pc-b", ["b0", "b1"], "now() - interval '10 minutes'")
    _agent_rows(lab, "pc-c", ["c0", "c1"], "now() + interval '1 day'")
    _agent_rows(lab, "eis-pc", [], "now() + interval '1 day'")
    _agent_rows(lab, "rig-a", ["a0", "a1", "a2"], "now()")  # as the agent registers itself
    _sql(lab, ("INSERT INTO resources (resource, agent, instrument, channel) "
               "VALUES ('eis-pc:eis/0', 'eis-pc', 'eis', 0)", ()))  # fmt: skip
    runs = {"b0": _submit(lab, "pc-b/b0", "B0"), "c0": _submit(lab, "pc-c/c0", "C0"),
            "c1": _submit(lab, "pc-c/c1", "C1")}  # fmt: skip
    _running(lab, runs["b0"], 12, "Discharge at 1C")
    _running(lab, runs["c0"], 4, "EIS")
    _running(lab, runs["c1"], 9, "EIS")
    _sql(
        lab,
        ("INSERT INTO bookings (resource, run_id, holder, state, token, requested_at, "
         "granted_at, expires_at) VALUES ('eis-pc:eis/0', %s, 'pc-c', 'holding', 7, "
         "now() - interval '5 minutes', now() - interval '4 minutes', now() + interval '1 day')",
         (runs["c0"],)),
        ("INSERT INTO bookings (resource, run_id, holder, state, requested_at, expires_at) "
         "VALUES ('eis-pc:eis/0', %s, 'pc-c', 'waiting', now() - interval '2 minutes', "
         "now() + interval '1 day')", (runs["c1"],)),
    )  # fmt: skip
    runs["later"] = _submit(lab, "rig-a/a2", "Q1", not_before=time.time() + 86400)
    return runs


def lab_login(lab: TempLab, name: str, role: str) -> str:
    """A login of exactly ``name`` with ``role`` in this lab (dropped with the lab)."""
    from psycopg import sql

    with connect(lab.admin_url) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(
            sql.Identifier(lab.roles[role]), sql.Identifier(name)))  # fmt: skip
    lab.users.append(name)
    return lab.url_as(name)


@contextlib.asynccontextmanager
async def agent(lab: TempLab, broker: LocalMosquitto, runs: Path) -> AsyncIterator[LabAgent]:
    """``rig-a`` (the station account of the shipped broker ACL), three simulated channels."""
    cfg = agent_config_from_dict({
        "name": "rig-a",
        "instruments": {"cycler": {"driver": "maccor", "address": "tcp://127.0.0.1:1",
                                   "channels": 4}},
        "positions": [{"name": f"a{i}", "cycler": f"cycler/{i}"} for i in range(3)],
        "lab": {"heartbeat_s": 0.5}}, Path("rig-a.yaml"))  # fmt: skip
    a = LabAgent(cfg, lab_url=lab.url, runs_dir=runs, sim=True, mqtt_url=broker.url("rig-a"),
                 install_signals=False, run_options=RunOptions(poll_s=0.5),
                 stop_grace_s=5)  # fmt: skip
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(a.run(), name="agent")
        async with asyncio.timeout(60):
            await a.registered.wait()
        try:
            yield a
        finally:
            a.signal("test")
            a.signal("test")
            async with asyncio.timeout(60):
                await task


def config(tmp: Path, lab_url: str, broker: LocalMosquitto, users: Path) -> WebConfig:
    return WebConfig(
        runs_dir=tmp / "runs", lab=lab_url, lab_poll_s=0.5, batch_s=0.1,
        mqtt=MqttSettings.from_url(broker.url("viewer"), station="web"),
        users=UserStore.from_file(users), audit_path=tmp / "audit.jsonl",
        work_dir=tmp / "work", cache_dir=tmp / "cache",
    )  # fmt: skip


def users(tmp: Path, oleg: str) -> Path:
    path = tmp / "users"
    set_user(path, "olga", "operator", "operator-pw-1")
    set_user(path, "vera", "viewer", "viewer-pw-1")
    set_user(path, oleg, "operator", "viewer-pw-1")
    return path


def row(key: str, state: str | None = None) -> str:
    return f'.gbody .grow[data-key="{key}"]' + (f'[data-state="{state}"]' if state else "")


async def test_the_lab_from_its_database_in_a_browser(
    lab: TempLab, broker: LocalMosquitto, tmp_path: Path
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    pw = pytest.importorskip("playwright.async_api", reason="the playwright package is missing")
    runs = build_lab(lab)
    web_url = lab.add_user("web", "operator")
    oleg = f"oleg{secrets.token_hex(3)}"
    lab_login(lab, oleg, "viewer")
    cfg = config(tmp_path, web_url, broker, users(tmp_path, oleg))
    async with (
        agent(lab, broker, tmp_path / "agent-runs"),
        serving(cfg) as url,
        pw.async_playwright() as p,
    ):
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await _sign_in(browser, url, "olga", "operator-pw-1")
        await page.wait_for_selector(row("labrig/pc-b/b0", "offline"))
        assert "agent pc-b offline" in (await page.get_attribute(row("labrig/pc-b/b0") + " .st",
                                                                 "title") or "")  # fmt: skip
        await page.wait_for_selector(row("labrig/pc-c/c1", "waiting"))
        assert "eis-pc:eis/0" in (await page.inner_text(row("labrig/pc-c/c1") + " .st"))
        await page.wait_for_selector(row("labrig/pc-c/c0", "running"))
        await page.wait_for_selector(row("labrig/rig-a/a0", "idle"))
        await page.screenshot(path=str(tmp_path / "lab.png"))
        state = await page.context.storage_state()
        phone = await browser.new_context(
            viewport={"width": 390, "height": 780}, color_scheme="dark", storage_state=state
        )
        small = await phone.new_page()
        await small.goto(url + "/")
        await small.wait_for_selector(row("labrig/pc-c/c1", "waiting"))
        assert await small.inner_text(row("labrig/pc-c/c1") + " .st") == "waiting"  # short
        await small.screenshot(path=str(tmp_path / "lab-phone-dark.png"))
        await phone.close()
        run_id = await _submit_in_page(page, url)
        await page.goto(url + "/")
        await page.wait_for_selector(row("labrig/rig-a/a1", "running"), timeout=60_000)
        volts = page.locator(row("labrig/rig-a/a1") + " span").nth(7)  # live, from MQTT
        await pw.expect(volts).not_to_have_text("–", timeout=20_000)
        await _queue_page(page, url, runs, run_id, tmp_path)
        await _commands(page, url, run_id, tmp_path)
        viewer = await _sign_in(browser, url, oleg, "viewer-pw-1")
        await viewer.goto(f"{url}/runs/{runs['c0']}")
        await viewer.wait_for_selector("#state.running")
        assert "viewer in the lab database" in await viewer.inner_text("#actions")
        assert page.errors == [] and viewer.errors == []
        await browser.close()
    with connect(lab.url) as conn:
        cmds = conn.execute("SELECT op, state, note FROM commands WHERE run_id = %s ORDER BY id",
                            (run_id,)).fetchall()  # fmt: skip
    assert [(op, state) for op, state, _ in cmds] == [("pause", "accepted"), ("abort", "accepted")]
    assert all(note.startswith("olga (web)") for _, _, note in cmds)
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    mine = [(e["action"], e["accepted"], e.get("via")) for e in audit if e["target"] == run_id]
    assert mine == [("pause", True, "lab"), ("abort", True, "lab")]


async def _sign_in(browser: Any, url: str, name: str, password: str) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(url + "/login")
    await page.fill("#username", name)
    await page.fill("#password", password)
    await page.click("#signin")
    await page.wait_for_url(url + "/")
    return page


async def _submit_in_page(page: Any, url: str) -> str:
    """Queue a library protocol on rig-a/a1 from the queue page's form."""
    await page.goto(url + "/queue")
    await page.wait_for_selector("#submitbox:not(.hidden)")
    await page.fill("#s-yaml", PROTOCOL.format(tag="a1", cell="A1"))
    await page.fill("#s-cell", "A1")
    await page.fill("#s-position", "rig-a/a1")
    await page.click("#s-go")
    await page.click("#confirm-ok")
    msg = page.locator("#submitmsg .msg.ok")
    await msg.wait_for(timeout=20_000)
    text = await msg.inner_text()
    assert "on rig-a/a1" in text, text
    return text.split()[1]


async def _queue_page(page: Any, url: str, runs: dict[str, str], run_id: str, shots: Path) -> None:
    await page.goto(url + "/queue")
    await page.wait_for_selector(f'#jobs tr[data-run="{runs["later"]}"]')
    await page.wait_for_selector(f'#jobs tr[data-run="{run_id}"]')
    hold = page.locator(".tl-bar.hold")
    await hold.wait_for()
    assert runs["c0"] in (await hold.get_attribute("title") or "")
    assert "token 7" in (await hold.get_attribute("title") or "")
    wait = page.locator(".tl-bar.wait")
    assert runs["c1"] in (await wait.get_attribute("title") or "")
    await page.screenshot(path=str(shots / "queue.png"), full_page=True)


async def _commands(page: Any, url: str, run_id: str, shots: Path) -> None:
    await page.goto(f"{url}/runs/{run_id}")
    await page.wait_for_selector("#state.running", timeout=30_000)
    await page.click("#cmd-pause")
    await page.click("#confirm-ok")
    await page.wait_for_selector("#cmdmsg .msg.ok", timeout=30_000)
    await page.wait_for_selector("#state.paused", timeout=30_000)
    await page.screenshot(path=str(shots / "run-paused.png"), full_page=True)
    await page.click("#cmd-abort")
    await page.fill("#confirm input", "end of the test")
    await page.click("#confirm-ok")
    await page.wait_for_selector("#state.aborted", timeout=30_000)
    await page.screenshot(path=str(shots / "run-aborted.png"), full_page=True)


async def test_lab_api_roles_queue_and_refusals(
    lab: TempLab, broker: LocalMosquitto, tmp_path: Path
) -> None:
    """Without a browser: a web app whose lab login is only a viewer commands nothing;
    runs, events and the queue come from the database; a queued run is taken off."""
    runs = build_lab(lab)
    viewer_url = lab.add_user(f"webv{secrets.token_hex(2)}", "viewer")
    operator_url = lab.add_user(f"webo{secrets.token_hex(2)}", "operator")
    oleg = f"oleg{secrets.token_hex(3)}"
    path = users(tmp_path, oleg)
    async with (
        serving(config(tmp_path, viewer_url, broker, path)) as url,
        httpx.AsyncClient(base_url=url) as c,
    ):
        token = await sign_in(c, "olga")
        await wait_until(lambda: _role_is(c, "viewer"))  # once the lab was read
        me = (await c.get("/api/me")).json()
        assert "is a lab viewer, not an operator" in me["role_note"], me
        r = await c.post(f"/api/runs/{runs['later']}/command", headers={"x-csrf-token": token},
                             json={"command": "abort", "confirm": True})  # fmt: skip
        assert r.status_code == 403 and "not an operator" in r.json()["reason"]
    async with (
        serving(config(tmp_path, operator_url, broker, path)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as c,
    ):
        token = await sign_in(c, "olga")
        await wait_until(lambda: _lab_rows(c, 6))
        listed = (await c.get("/api/runs")).json()["runs"]
        assert {runs["b0"], runs["c0"], runs["later"]} <= {r["run_id"] for r in listed}
        info = (await c.get(f"/api/runs/{runs['b0']}")).json()
        assert (info["station"], info["position"], info["state"]) == ("pc-b", "b0", "running")
        q = (await c.get("/api/queue")).json()
        later = next(j for j in q["runs"] if j["run_id"] == runs["later"])
        assert (later["state"], later["place"], later["position"]) == ("queued", 1, "rig-a/a2")
        r = await c.post(f"/api/runs/{runs['later']}/command", headers={"x-csrf-token": token},
                             json={"command": "abort", "confirm": True})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["reason"] == "removed from the queue" and r.json()["via"] == "lab"
        body = {"protocol": "rate_test", "cell_id": "Z", "position": "nope/x"}
        bad = await c.post("/api/submit", headers={"x-csrf-token": token}, json=body)
        assert bad.status_code == 409 and "no position fits" in bad.json()["error"]


async def _lab_rows(c: httpx.AsyncClient, n: int) -> bool:
    rows = (await c.get("/api/lab")).json()["rows"]
    return len([r for r in rows if r["prefix"] in ("labrig/pc-b", "labrig/pc-c")]) >= 4 and (
        len(rows) >= n
    )


async def _role_is(c: httpx.AsyncClient, role: str) -> bool:
    return bool((await c.get("/api/me")).json()["role"] == role)

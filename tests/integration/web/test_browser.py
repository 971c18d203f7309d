"""The web app in a real browser: Playwright driving the system's Chromium
(/usr/bin/chromium; never a downloaded browser) against a daemon running dry runs on the
real clock, a private Mosquitto and the app on loopback. Screenshots of every page go to
the test's directory (``tmp_path``)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from labrig.orchestrator.mqtt.testing import LocalMosquitto
from labrig.orchestrator.station import INPROCESS_STATION, Position

from .support import CHROMIUM_ARGS, PASSWORDS, STATION, daemon, serving, submit, web_config

CHROMIUM = "/usr/bin/chromium"
ARGS = CHROMIUM_ARGS
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason="Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
]
playwright = pytest.importorskip("playwright.async_api", reason="the playwright package is missing")

Page = Any
# the run page's requests for its facts, plot, cycles and events: when they started, and
# when the page's own scripts had run (DOMContentLoaded)
FIRST_REQUESTS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const early = performance.getEntriesByType("resource")
    .filter((e) => /\\/api\\/runs\\/[^/]+(\\/series|\\/cycles|\\/events|)(\\?|$)/.test(e.name))
    .map((e) => e.startTime);
  return { early, dcl: nav.domContentLoadedEventStart,
    ready: performance.getEntriesByName("labrig-ready").length };
}"""
ASSETS_FETCHED = """() => performance.getEntriesByType("resource")
  .filter((e) => e.name.includes("/static/")).map((e) => [e.name, e.transferSize])"""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in(
    browser: Any, url: str, name: str, shots: Path | None = None, **kw: Any
) -> Page:
    """A new browser context, signed in as ``name`` through the sign-in page."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860}, **kw)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    await page.goto(url + "/")
    assert "/login" in page.url
    await page.fill("#username", name)
    await page.fill("#password", PASSWORDS[name])
    if shots is not None:
        await page.screenshot(path=str(shots / "login.png"))
    await page.click("#signin")
    await page.wait_for_url(url + "/")
    return page


def row(key: str, state: str | None = None) -> str:
    sel = f'.gbody .grow[data-key="{key}"]'
    return sel + (f'[data-state="{state}"]' if state else "")


async def test_lab_page_shows_a_dry_run_changing_state_live(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    key = f"labrig/{STATION}/ch3"
    async with (
        daemon(runs, broker) as d,
        serving(web_config(runs, broker, mqtt_user="viewer")) as url,
        chromium() as browser,
    ):
        page = await signed_in(browser, url, "vera", tmp_path)
        await page.wait_for_selector(row(key, "idle"))  # from the retained station message
        await page.screenshot(path=str(tmp_path / "lab-idle.png"))
        navigations = len(await page.locator("#spacer").all())  # the same page throughout
        run_id = submit(d, ["Rest for 2 s", "Charge at 1C until 3.7 V or 6 s"], "ch3", "L3")
        await page.wait_for_selector(row(key, "running"), timeout=30_000)
        cells = page.locator(row(key) + " span")
        assert await cells.nth(3).inner_text() == "L3"
        volts = cells.nth(7)  # readings change while the state stays "running"
        await playwright.expect(volts).not_to_have_text("–", timeout=20_000)
        await playwright.expect(volts).not_to_have_text(await volts.inner_text(), timeout=20_000)
        await page.screenshot(path=str(tmp_path / "lab-running.png"))
        await page.wait_for_selector(row(key, "idle"), timeout=40_000)
        assert await cells.nth(2).inner_text() == "idle · finished"
        assert await page.get_attribute(row(key), "data-run") == run_id
        assert len(await page.locator("#spacer").all()) == navigations
        await page.fill("#filter", "L3")
        await playwright.expect(page.locator(".gbody .grow:not([hidden])")).to_have_count(1)
        await page.fill("#filter", "")
        state = await page.context.storage_state()
        phone = await browser.new_context(
            viewport={"width": 390, "height": 780}, storage_state=state
        )
        small = await phone.new_page()
        await small.goto(url + "/")
        await small.wait_for_selector(row(key, "idle"))
        await small.screenshot(path=str(tmp_path / "lab-phone.png"))
        assert page.errors == []


async def test_run_page_plot_gains_points_while_the_run_goes(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with (
        daemon(runs, broker) as d,
        serving(web_config(runs, broker, mqtt_user="viewer")) as url,
        chromium() as browser,
    ):
        page = await signed_in(browser, url, "vera")
        run_id = submit(d, ["Charge at 1C until 3.7 V or 60 s"], "ch1", "P1")
        await page.wait_for_selector(row(f"labrig/{STATION}/ch1", "running"), timeout=30_000)
        await page.goto(f"{url}/runs/{run_id}")
        await page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        await page.wait_for_selector("#plot canvas")
        first = int(await page.get_attribute("#plot", "data-points") or 0)
        counts = [first]
        for _ in range(200):
            await page.wait_for_timeout(100)
            counts.append(int(await page.get_attribute("#plot", "data-points") or 0))
            if counts[-1] >= first + 4:
                break
        assert counts[-1] >= first + 4, counts
        assert await page.inner_text("#state") == "running"
        await page.screenshot(path=str(tmp_path / "run-live.png"), full_page=True)
        assert page.errors == []


def _shared_eis_station() -> Any:
    """ch1 and ch2 behind one impedance channel (a multiplexed potentiostat); ch0 alone."""
    positions = [Position(name="ch0", cycler="cycler/0", impedance="eis/1")]
    positions += [Position(name=f"ch{i}", cycler=f"cycler/{i}", impedance="eis/0") for i in (1, 2)]
    return INPROCESS_STATION.model_copy(update={"name": STATION, "positions": positions})


async def test_viewer_abort_is_refused_operator_abort_is_obeyed_and_audited(
    broker: LocalMosquitto, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    eis = "EIS from 10 kHz to 1 Hz, 5 per decade, 10 mV amplitude at OCV"
    async with (
        daemon(runs, broker, _shared_eis_station()) as d,
        serving(web_config(runs, broker, mqtt_user="viewer")) as url,
        chromium() as browser,
    ):
        vera = await signed_in(browser, url, "vera")
        olga = await signed_in(browser, url, "olga")
        run_id = submit(d, ["Charge at 0.1C until 3.7 V or 10 min"], "ch0", "A9")
        submit(d, [eis, eis, eis, "Rest for 1 s"], "ch1", "E1")
        submit(d, [eis, "Rest for 1 s"], "ch2", "E2")
        await olga.wait_for_selector(row(f"labrig/{STATION}/ch2", "waiting"), timeout=30_000)
        await olga.screenshot(path=str(tmp_path / "lab-waiting.png"))
        await vera.goto(f"{url}/runs/{run_id}")
        await vera.wait_for_selector("#state.running", timeout=30_000)
        assert await vera.locator("#cmd-abort").count() == 0
        assert "only operators" in await vera.inner_text("#actions")
        csrf = await vera.get_attribute('meta[name="labrig-csrf"]', "content")
        refused = await vera.request.post(f"{url}/api/runs/{run_id}/command",
                                          data={"command": "abort", "confirm": True},
                                          headers={"x-csrf-token": csrf or ""})  # fmt: skip
        assert refused.status == 403
        await vera.screenshot(path=str(tmp_path / "run-viewer.png"), full_page=True)
        await olga.goto(f"{url}/queue")  # the shared potentiostat: one holds, one waits
        await olga.wait_for_selector(".tl-bar.hold", timeout=30_000)
        await olga.wait_for_selector(".tl-bar.wait")
        await olga.screenshot(path=str(tmp_path / "queue.png"), full_page=True)
        await olga.goto(f"{url}/runs/{run_id}")
        await olga.wait_for_selector("body[data-ready='1']")
        assert await olga.inner_text("#state") == "running"  # the viewer changed nothing
        await olga.click("#cmd-abort")
        await olga.fill("#confirm input", "test of the abort path")
        await olga.screenshot(path=str(tmp_path / "run-confirm.png"))
        await olga.click("#confirm-ok")
        await olga.wait_for_selector("#cmdmsg .msg.ok", timeout=20_000)
        await olga.wait_for_selector("#state.aborted", timeout=30_000)
        await olga.screenshot(path=str(tmp_path / "run-aborted.png"), full_page=True)
        await olga.goto(f"{url}/runs")
        await olga.wait_for_selector(f'tr[data-run="{run_id}"]')
        await olga.screenshot(path=str(tmp_path / "runs.png"))
        assert vera.errors == [] and olga.errors == []
    meta = json.loads((runs / run_id / "run.json").read_text())
    assert meta["state"] == "aborted" and "olga (web)" in meta["reason"]
    events = [json.loads(x) for x in (runs / run_id / "events.jsonl").read_text().splitlines()]
    commands = [e["data"] for e in events if e["kind"] == "command"]
    assert [(c["command"], c["sender"], c["accepted"]) for c in commands] == [
        ("abort", "olga (web)", True)
    ]
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    mine = [(e["user"], e["accepted"], e.get("via")) for e in audit if e["target"] == run_id]
    assert mine == [("vera", False, "web"), ("olga", True, "daemon")]


async def test_run_page_of_a_finished_run_zooms_on_the_server_and_shows_impedance(
    finished_run: tuple[Path, str], tmp_path: Path
) -> None:
    runs, run_id = finished_run
    async with serving(web_config(runs, None, auth=False)) as url, chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        await page.goto(f"{url}/runs/{run_id}")
        await page.wait_for_selector("body[data-ready='1']")
        # its first requests went out from the top of the page, before its scripts ran
        first = await page.evaluate(FIRST_REQUESTS)
        assert first["ready"] == 1, first
        assert len(first["early"]) == 4 and all(t < first["dcl"] for t in first["early"]), first
        await page.wait_for_selector("#eisplot canvas", timeout=60_000)
        assert await page.get_attribute("#cycplot", "data-cycles") == "3"
        again = await context.new_page()  # the same browser cache
        await again.goto(f"{url}/runs/{run_id}")
        await again.wait_for_selector("body[data-ready='1']")
        cached = await again.evaluate(ASSETS_FETCHED)  # every asset from the browser's cache
        assert cached and all(size == 0 for _, size in cached), cached
        await again.close()
        whole = int(await page.get_attribute("#plot", "data-points") or 0)
        assert whole > 100
        await page.screenshot(path=str(tmp_path / "run-finished.png"), full_page=True)
        box = await page.locator("#plot .u-over").bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        await page.mouse.move(box["x"] + box["width"] * 0.40, y)
        await page.mouse.down()
        await page.mouse.move(box["x"] + box["width"] * 0.50, y, steps=5)
        await page.mouse.up()
        zoomed = playwright.expect(page.locator("#plot"))
        await zoomed.not_to_have_attribute("data-points", str(whole))
        inside = int(await page.get_attribute("#plot", "data-points") or 0)
        assert 2 < inside < whole / 4
        await page.screenshot(path=str(tmp_path / "run-zoomed.png"))
        await page.click("#resetzoom")
        await zoomed.to_have_attribute("data-points", str(whole))

"""Benchmark of ``labrig web``: live lab page under 1,024 channels at 1 Hz, and the page
load of a 1000-cycle run.

    python bench/web.py                       # both parts
    python bench/web.py --part live --seconds 30
    python bench/web.py --part load --run-dir runs/<id-of-a-1000-cycle-run>

Live: a private Mosquitto; a publisher process (``MqttPublisher``, station ``rig-a``)
sends a status for each of 1,024 channels, then telemetry at 1 Hz each, spread evenly;
``labrig web`` runs in its own process; Chromium (``/usr/bin/chromium``, Playwright)
shows the lab page with about 40 rows in view. Figures: the time from the broker's
delivery of a reading (as ``mosquitto_sub`` in its own process saw it) to the change of
its row in the browser's DOM (a MutationObserver on the rows), p50/p99; the same from
the publish call (the reading's ``wall_time``); the web server's CPU. Reference: the
publish call to ``mosquitto_sub``'s receipt of the same readings (ratio shown).

Load: a 1000-cycle dry run (``endurance_1c_checkups`` on the in-process simulated
station, as ``bench/dry_run.py``; or ``--run-dir``); the time from navigation to the run
page loaded: its V/I/T plot, capacity plot and events drawn, which the page itself marks
(``performance.mark("labrig-ready")``, and ``body[data-ready]``). Two figures: the page's
own (navigation start to the mark) and the wall time from Playwright's ``goto`` until it
sees ``body[data-ready]`` (its own round trips and the new tab's start added; the only
figure for a labrig whose page has no mark). Cases: the first visit to a server that
never summarised the run (it reads every record once and keeps per-chunk summaries and
the page's answers in its cache directory), the first visit after that server was
restarted (all on disk), and repeat visits (median of 5); each in ``--rounds`` fresh
server processes and browsers (median, and the fastest). References, run in the same
process: the page of a 3-cycle run (first visit with an empty browser cache, repeat
visits), and ``protocols.analysis.load_run`` of the same directory (what ``labrig
report`` reads first).

Chromium runs without its address-bar renderer (``--omnibox-renderer`` keeps it: see
``NO_OMNIBOX``).

Both parts print the machine's load average beside their figures: the machine is shared,
so the tail of every figure grows with it; read the ratios to the references.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labrig.orchestrator.mqtt.testing import LocalMosquitto, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
# Chromium's new headless mode starts, for every window (each page the bench opens), a
# renderer for the address bar's WebUI pop-up that costs as much CPU as the run page
# itself, on the same two cores; a person's browser has it running once. Off unless
# --omnibox-renderer (figures as measured before this was known).
NO_OMNIBOX = "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup"
OBSERVER = """
window.__lat = []; window.__last = new Map();
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((muts) => {
    const now = Date.now() / 1000;
    for (const m of muts) {
      const row = m.target, u = parseFloat(row.dataset.updated);
      if (!u || window.__last.get(row) === u) continue;
      window.__last.set(row, u);
      window.__lat.push([row.dataset.key, u, now]);
    }
  }).observe(document.getElementById("gbody"),
             { subtree: true, attributes: true, attributeFilter: ["data-updated"] });
});
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_web(runs: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "labrig.orchestrator.cli", "web", "--runs", str(runs),
           "--port", str(port), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("labrig web did not start")


# ---------------------------------------------------------------------------- publisher


async def publish(url: str, channels: int, seconds: float) -> None:
    """The load: statuses once, then telemetry at 1 Hz per channel, spread evenly."""
    from labrig.orchestrator.events import RunState, RunStatus, Telemetry
    from labrig.orchestrator.mqtt import MqttPublisher, MqttSettings

    settings = MqttSettings.from_url(url, station="rig-a", max_pending_telemetry=8192)
    names = [f"ch{i:04d}" for i in range(channels)]
    async with MqttPublisher(settings, channels=names) as pub:
        await pub.wait_connected(10)
        for i, name in enumerate(names):
            pub.publish_status(RunStatus(f"bench-{i}", name, "bench", RunState.running, "charge",
                                         1, 1, 3.7, 0.001, 25.0, 0.0, 3600.0, time.time(),
                                         f"C{i:04d}"))  # fmt: skip
        await pub.flush(30)
        loop = asyncio.get_running_loop()
        t0, k = loop.time(), 0
        while (now := loop.time() - t0) < seconds:
            due = int(now * channels)
            while k < due:
                i = k % channels
                v = 3.5 + 0.2 * ((k // channels) % 10) / 10
                pub.publish_telemetry(Telemetry(f"bench-{i}", names[i], time.time(), now, v,
                                                0.001, 25.0, 1, 1))  # fmt: skip
                k += 1
            await asyncio.sleep(0.01)
        await pub.flush(10)


# ---------------------------------------------------------------------------- live part


def reference_subscriber(broker: LocalMosquitto, out: Path) -> subprocess.Popen[bytes]:
    """``mosquitto_sub`` (its own process, in C): when the broker delivered each reading."""
    cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "viewer",
           "-P", broker.passwords["viewer"], "-t", "labrig/+/+/telemetry", "-F", "%U %t %p",
           "--nodelay"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.DEVNULL)


def delivered(out: Path) -> dict[tuple[str, float], float]:
    """(channel, wall_time) -> when mosquitto_sub received it."""
    got: dict[tuple[str, float], float] = {}
    for line in out.read_text(errors="replace").splitlines():
        stamp, topic, payload = [*line.split(" ", 2), "", ""][:3]
        try:
            got[(topic.split("/")[-2], float(json.loads(payload)["wall_time"]))] = float(stamp)
        except (ValueError, KeyError, IndexError):
            continue
    return got


async def measure_live(
    url: str, broker: LocalMosquitto, web_pid: int, seconds: float, channels: int
) -> dict[str, Any]:
    """Watch the lab page for ``seconds``; latencies, rows and the server's CPU."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1600, "height": 1200})
        await page.add_init_script(OBSERVER)
        await page.goto(url + "/")
        # every channel on the page (a loaded machine may take a while), then let it settle
        await page.wait_for_function(
            f"() => window.labrig && window.labrig.lab.rows.size >= {channels}", timeout=120_000
        )
        await asyncio.sleep(3)
        await page.evaluate("() => { window.__lat = []; }")
        cpu0, wall0 = cpu_of(web_pid), time.monotonic()
        got0 = await page.evaluate("() => window.labrig.lab.received")
        await asyncio.sleep(seconds)
        out = {
            "cpu": cpu_of(web_pid) - cpu0,
            "wall": time.monotonic() - wall0,
            "lat": await page.evaluate("() => window.__lat"),
            "got": await page.evaluate("() => window.labrig.lab.received") - got0,
            "rows": await page.evaluate("() => window.labrig.lab.rows.size"),
            "shown": await page.locator(".gbody .grow:not([hidden])").count(),
        }
        await browser.close()
    return out


def live(args: argparse.Namespace, tmp: Path) -> None:
    broker = LocalMosquitto(tmp / "broker")
    broker.start()
    runs = tmp / "runs"
    runs.mkdir()
    print(f"[live] machine before: {machine()}")
    web, url = start_web(runs, ["--mqtt", broker.url("viewer"), "--cache", str(tmp / "cache")])
    pub = subprocess.Popen([sys.executable, __file__, "--publisher", broker.url("rig-a"),
                            "--channels", str(args.channels),
                            "--seconds", str(args.seconds + 8)])  # fmt: skip
    sub = reference_subscriber(broker, tmp / "sub.log")
    try:
        m = asyncio.run(measure_live(url, broker, web.pid, args.seconds, args.channels))
    finally:
        sub.terminate()
        sub.wait(10)
        pub.wait(60)
        web.terminate()
        web.wait(10)
        broker.stop()
    got = delivered(tmp / "sub.log")
    first = min((u for _, u, _ in m["lat"]), default=0.0)
    published = [(t - u) * 1e3 for (_, u), t in got.items() if u >= first]
    dom, web_path = [], []
    for key, u, seen in m["lat"]:
        dom.append((seen - u) * 1e3)
        t = got.get((key.rsplit("/", 1)[-1], u))
        if t is not None:
            web_path.append((seen - t) * 1e3)
    wall = m["wall"]
    print(f"[live] {args.channels} channels x 1 Hz for {wall:.0f} s; {m['rows']} rows on the "
          f"page, {m['shown']} in view; {len(dom)} row changes seen in the DOM")  # fmt: skip
    sent = sum(1 for (_, u) in got if first <= u <= first + wall)
    print(f"  readings through the broker     {sent / wall:8.0f} /s (of {args.channels}/s asked)")
    print(f"  rows delivered to the page      {m['got'] / wall:8.0f} row updates/s")
    print(f"  MQTT message -> browser DOM     p50 {pct(web_path, 50):7.0f} ms   "
          f"p99 {pct(web_path, 99):7.0f} ms   (from the broker's delivery; "
          "target p99 < 1000 ms)")  # fmt: skip
    print(
        f"  publish call -> browser DOM     p50 {pct(dom, 50):7.0f} ms   p99 {pct(dom, 99):7.0f} ms"
    )
    print(f"  reference: publish call -> MQTT subscriber (mosquitto_sub)  p50 "
          f"{pct(published, 50):7.1f} ms   p99 {pct(published, 99):7.1f} ms")  # fmt: skip
    print(f"  ratio (publish -> DOM) / (publish -> subscriber)  p50 "
          f"{pct(dom, 50) / pct(published, 50):.1f} x   "
          f"p99 {pct(dom, 99) / pct(published, 99):.1f} x")  # fmt: skip
    print(f"  web server CPU                  {100 * m['cpu'] / wall:7.1f} % of one core")
    print(f"  machine after: {machine()}")


# ---------------------------------------------------------------------------- load part


SHORT = """
name: bench-short
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200, cell_id: S1}
limits: {voltage_V: [1.95, 3.75], current_abs_mA: 5.0}
defaults: {record: {every_s: 30}}
sequence:
  - repeat: 3
    steps: [Charge at 1C until 3.7 V or 2 h, Discharge at 1C until 2.0 V or 2 h]
"""


def make_run(out: Path, text: str | None = None) -> Path:
    """A dry run on the virtual clock: the 1000-cycle endurance protocol, or ``text``."""
    from labrig.orchestrator.clock import new_virtual_loop
    from labrig.orchestrator.runner import RunRequest, execute_run
    from labrig.orchestrator.station import INPROCESS_STATION
    from labrig.protocols.loader import dump_protocol_yaml, load_protocol, load_protocol_text

    proto = load_protocol_text(text) if text else load_protocol("endurance_1c_checkups")
    req = RunRequest(protocol=proto, protocol_yaml=dump_protocol_yaml(proto), out_dir=out,
                     station=INPROCESS_STATION, sim=True)  # fmt: skip
    t0 = time.perf_counter()
    with asyncio.Runner(loop_factory=new_virtual_loop) as runner:
        outcome, root = runner.run(execute_run(req))
    print(f"[load] dry run of {proto.name}: {outcome.cycles} cycles, {outcome.rows:,} rows "
          f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return Path(root)


# the page's own signal: run.js marks "labrig-ready" when the V/I/T plot, the capacity
# plot and the events are drawn (and sets body[data-ready]); ms from navigation start
READY = """() => { const m = performance.getEntriesByName("labrig-ready")[0];
  return m ? m.startTime : null; }"""


async def page_loads(url: str, pages: list[tuple[Path, int]]) -> list[list[tuple[float, float]]]:
    """Load each run page ``n`` times, one after another in one browser context (the
    page's own scripts cached as in a real browser); per visit (page's own time from
    navigation start to plots and events drawn, wall time from the ``goto`` call to
    Playwright seeing ``body[data-ready]``), seconds. Pages without the mark (an older
    labrig) give the wall time for both."""
    from playwright.async_api import async_playwright

    out = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        for root, n in pages:
            times: list[tuple[float, float]] = []
            for _ in range(n):
                page = await context.new_page()
                t0 = time.perf_counter()
                await page.goto(f"{url}/runs/{root.name}")
                await page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                wall = time.perf_counter() - t0
                mark = await page.evaluate(READY)
                times.append((wall if mark is None else mark / 1e3, wall))
                await page.close()
            out.append(times)
        await browser.close()
    return out


def machine() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


Visits = list[tuple[float, float]]  # (page's own time, wall time) per visit, seconds


def visits(root: Path, short: Path, cache: Path, repeats: int) -> tuple[Visits, Visits]:
    """A web server (its own process) on a runs directory holding both runs, a fresh
    browser: the small run's page three times (the first with the browser's cache empty),
    then the big run's first visit and ``repeats`` more; (small run, big run)."""
    runs = root.parent
    if short.parent != runs:
        shutil.copytree(short, runs / short.name, dirs_exist_ok=True)
    web, url = start_web(runs, ["--no-mqtt", "--cache", str(cache)])
    try:
        small, big = asyncio.run(page_loads(url, [(runs / short.name, 3), (root, 1 + repeats)]))
    finally:
        web.terminate()
        web.wait(10)
    return small, big


def _row(label: str, own: list[float], wall: list[float], note: str = "") -> None:
    med = statistics.median
    print(f"  {label:<44} {med(own) * 1e3:6.0f} ms ({min(own) * 1e3:4.0f})   "
          f"{med(wall) * 1e3:6.0f} ms ({min(wall) * 1e3:4.0f})   {note}")  # fmt: skip


def load(args: argparse.Namespace, tmp: Path) -> None:
    from labrig.protocols.analysis import load_run

    root = Path(args.run_dir) if args.run_dir else make_run(tmp / "runs")
    short = make_run(tmp / "short", SHORT)
    rounds = max(1, args.rounds)
    print(f"[load] {rounds} round(s); machine before: {machine()}")
    never: Visits = []
    restart: Visits = []
    repeat: list[Visits] = []
    cold: Visits = []
    small: list[Visits] = []
    for k in range(rounds):
        cache = tmp / f"cache-{k}"  # empty: this server has never summarised the run
        s0, big = visits(root, short, cache, 0)
        never.append(big[0])
        s1, big = visits(root, short, cache, 5)  # restarted on the same cache
        restart.append(big[0])
        repeat.append(big[1:])
        cold += [s0[0], s1[0]]
        small += [s0[1:], s1[1:]]
    refs = []
    for _ in range(3):
        t0 = time.perf_counter()
        data = load_run(root)
        refs.append(time.perf_counter() - t0)
    ref = statistics.median(refs)
    med = statistics.median

    def own(v: Visits) -> list[float]:
        return [a for a, _ in v]

    def wall(v: Visits) -> list[float]:
        return [b for _, b in v]

    rep_own = [med(own(v)) for v in repeat]
    rep_wall = [med(wall(v)) for v in repeat]
    sm_own = [med(own(v)) for v in small]
    sm_wall = [med(wall(v)) for v in small]
    print(f"[load] run page of {root.name}: {len(data.series):,} records, "
          f"{len(data.stored_cycles)} cycles; machine after: {machine()}")  # fmt: skip
    print("  run page loaded: plots and events drawn. Median of rounds (fastest):")
    print("  the page's own time from navigation start to its 'labrig-ready' mark, and the")
    print("  wall time from Playwright's goto to its seeing body[data-ready] (adds its own")
    print("  round trips and the new tab's start)")
    print(f"  {'':<44} {'page':>10}          {'wall':>10}")
    _row("1000-cycle, first visit, never summarised", own(never), wall(never),
         "reads every record once, keeps the summaries")  # fmt: skip
    _row("1000-cycle, first visit after restart", own(restart), wall(restart), "target < 1000 ms")
    _row("1000-cycle, repeat visit (median of 5)", rep_own, rep_wall, "target < 1000 ms")
    _row("3-cycle, first visit (browser cache empty)", own(cold), wall(cold))
    _row("3-cycle, repeat visit", sm_own, sm_wall)
    print(f"  reference: analysis load_run                 {ref * 1e3:6.0f} ms")
    first, again = med(own(restart)) / med(sm_own), med(rep_own) / med(sm_own)
    print(f"  ratios to the 3-cycle page (page's own time): first after restart {first:.2f}, "
          f"repeat {again:.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=["live", "load", "both"], default="both")
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--run-dir", help="a 1000-cycle run directory to load (default: make one)")
    ap.add_argument("--rounds", type=int, default=3, help="load part: server starts per case")
    ap.add_argument(
        "--omnibox-renderer",
        action="store_true",
        help="let Chromium start its address-bar renderer per window (as before)",
    )
    ap.add_argument("--publisher", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.omnibox_renderer:
        ARGS.append(NO_OMNIBOX)
    if args.publisher:
        asyncio.run(publish(args.publisher, args.channels, args.seconds))
        return
    if not os.access(CHROMIUM, os.X_OK) or shutil.which("mosquitto_sub") is None:
        raise SystemExit(
            "needs /usr/bin/chromium and mosquitto (apt-get install chromium mosquitto)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("live", "both"):
            live(args, Path(tmp))
        if args.part in ("load", "both"):
            load(args, Path(tmp))


if __name__ == "__main__":
    main()

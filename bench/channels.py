"""Benchmark: 1,024 channels through the wire-level MACCOR simulators, 1 Hz records, real time.

    python bench/channels.py                   # 8 testers x 128 channels, 60 s
    python bench/channels.py --testers 2 --channels 64 --seconds 20

Each simulated tester (MacNet JSON-RPC over loopback TCP) runs in its own process, so the
figures are the orchestrator's alone. The orchestrator is the scheduler with one run per
channel (the lab's MACCOR driver, one connection per channel, as on hardware), records
every 1 s on the testers, block ends watched every second (one (4,1) status poll per
tester, drivers.maccor.board), records collected every 2 s (``--collect``), each collection
placed just after the tester has made a record (orchestrator/run/pacing.py), and - when
mosquitto is installed - one MQTT publisher for the station with a subscriber
(mosquitto_sub, its own process).

Printed: CPU of the orchestrator process (process_time / wall, all its threads), p50/p99
delay from a record's instrument time to the moment the executor stores it, and from the
record to its telemetry message at the subscriber. A record's instrument time is its test
time on the tester's clock, placed on the machine-wide monotonic clock by one (4,7)
read of the tester's TestTime per channel once all runs are going (off by at most half
that read's round trip, printed).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROTOCOL = """
name: bench-1hz
cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200, counter_electrode: In/InLi}
limits: {voltage_V: [1.95, 3.75], current_abs_mA: 5.0}
defaults: {record: {every_s: 1}}
sequence:
  - Charge at 0.1C until 3.7 V or 1 h
"""
# (1 h, not longer: a simulated tester computes a step's records when it starts, and
# 4,096 channels of 10-hour steps at 1 Hz outgrew this machine's memory)


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads, by thread name."""
    import os
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        name = "event loop" if name == "MainThread" else name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


# ---------------------------------------------------------------------- simulator process
async def _serve_sim(port: int, channels: int) -> None:
    from labrig.simulators.maccor import serve_maccor

    async with serve_maccor(channels, port=port) as srv:
        print(srv.url, flush=True)
        await asyncio.Event().wait()


def start_testers(n: int, channels: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    procs, urls = [], []
    for _ in range(n):
        p = subprocess.Popen(
            [sys.executable, __file__, "--serve-sim", "0", "--channels", str(channels)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if not line.startswith("tcp://"):
            raise SystemExit(f"simulator did not start: {line!r}")
        urls.append(line)
    return procs, urls


# ---------------------------------------------------------------------- orchestrator
class Probe:
    """Notes block starts and storage times of every channel's records."""

    def __init__(self) -> None:
        self.block_t0: dict[str, float] = {}
        self.start_call: list[float] = []
        self.read_rtt: list[float] = []
        self.channels: dict[str, Any] = {}
        self.store_delay: list[float] = []
        self.telemetry_delay: list[float] = []  # newest record -> its telemetry handed on
        self.newest_delay: list[float] = []  # of each batch's newest record (telemetry's)
        self.by_voltage: dict[tuple[str, float], float] = {}  # -> record instrument time
        # (channel, when stored, the block's start less the run's time offset, time_s,
        # voltage_V) of each batch stored while measuring: see :meth:`work_out`
        self.stored: list[tuple[str, float, float, Any, Any]] = []
        self.measuring = False
        self.rows = 0

    def work_out(self) -> None:
        """Storage delays and record times from the batches noted while measuring."""
        for channel, now, base, times, volts in self.stored:
            for t in times[-5:]:  # a batch is one or two records at 1 Hz polling
                self.store_delay.append(now - (base + float(t)))
            newest = base + float(times[-1])
            self.newest_delay.append(now - newest)
            self.by_voltage[(channel, float(volts[-1]))] = newest
            self.rows += len(times)
        self.stored = []

    async def match_clocks(self) -> None:
        """Each block's start on our clock: the tester's TestTime, read one channel at a
        time once all runs are going, against the middle of that read's round trip."""
        for name, ch in self.channels.items():
            asked = time.monotonic()
            reading = await ch.read()
            answered = time.monotonic()
            self.read_rtt.append(answered - asked)
            self.block_t0[name] = (asked + answered) / 2 - reading.test_time_s

    def adapter(self, b: Any, pos: Any) -> Any:
        from dataclasses import replace

        probe = self
        inner = b.cycler

        class Timed:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            async def start_block(self, block_id: int, steps: Any) -> None:
                t0 = time.monotonic()
                await inner.start_block(block_id, steps)
                probe.start_call.append(time.monotonic() - t0)
                probe.block_t0[pos.name] = t0  # until match_clocks() knows better
                probe.channels[pos.name] = inner

        return replace(b, cycler=Timed())

    def on_executor(self, ex: Any) -> None:
        store = ex.store
        original = store.append_records
        channel = ex.channel
        probe = self

        def append_records(cols: Any) -> None:
            # noted as it comes, worked out after the window (measuring must cost the
            # measured process as little as it can)
            if probe.measuring:
                t0 = probe.block_t0.get(channel)
                if t0 is not None:
                    # stored times are on the run's clock: the block's first record is
                    # dated at the block's start on it; back to the tester's test time
                    base = t0 - (ex._time_offset or 0.0)
                    probe.stored.append(
                        (channel, time.monotonic(), base, cols["time_s"], cols["voltage_V"])
                    )
            original(cols)

        store.append_records = append_records
        send = ex._send_telemetry

        def send_telemetry() -> None:
            before = ex._last_telemetry
            send()
            t0 = probe.block_t0.get(channel)
            if probe.measuring and t0 is not None and ex._last_telemetry != before:
                t = ex._last_run_time - (ex._time_offset or 0.0)  # newest record, tester time
                probe.telemetry_delay.append(time.monotonic() - (t0 + t))

        ex._send_telemetry = send_telemetry


async def orchestrate(args: argparse.Namespace, urls: list[str], mqtt: Any) -> dict[str, Any]:
    from labrig.orchestrator.executor import RunOptions
    from labrig.orchestrator.scheduler import RunSpec, Scheduler, WatchdogOptions
    from labrig.orchestrator.station import InstrumentConfig, Position, StationConfig
    from labrig.protocols.loader import dump_protocol_yaml, load_protocol_text

    instruments = {
        f"t{i}": InstrumentConfig(
            driver="maccor",
            address=url,
            channels=args.channels,
            options={"timeout_s": args.timeout},
        )
        for i, url in enumerate(urls)
    }
    positions = [
        Position(name=f"t{i}c{c:03d}", cycler=f"t{i}/{c}")
        for i in range(len(urls))
        for c in range(args.channels)
    ]
    station = StationConfig(name="bench", instruments=instruments, positions=positions)
    proto = load_protocol_text(PROTOCOL)
    text = dump_protocol_yaml(proto)
    probe = Probe()
    sinks: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        if mqtt is not None:
            from labrig.orchestrator.mqtt import MqttPublisher

            pub = await stack.enter_async_context(
                MqttPublisher(mqtt, channels=[p.name for p in positions])
            )
            if not await pub.wait_connected(10):
                raise SystemExit(f"cannot connect to {mqtt.url}")
            sinks.append(pub)
        out = Path(await stack.enter_async_context(_tmpdir()))
        sched = await stack.enter_async_context(
            Scheduler(
                station=station,
                out_dir=out,
                sim=False,
                sinks=sinks,
                on_executor=probe.on_executor,
                adapter=probe.adapter,
                watchdog=WatchdogOptions(),
                run_options=RunOptions(
                    poll_s=args.poll, collect_s=args.collect, telemetry_every_s=1.0
                ),
            )
        )
        t_start = time.monotonic()
        for p in positions:
            sched.submit(RunSpec(protocol=proto, protocol_yaml=text, position=p.name))

        def not_started() -> list[Any]:
            # ended before its block was started (a run that fails later is counted
            # with the runs not running at the end of the window)
            return [
                j for j in sched.jobs()
                if j.state.value in ("failed", "aborted") and j.position not in probe.block_t0
            ]  # fmt: skip

        # every run started, or ended without starting (a loaded machine: connections
        # time out); those are counted and printed
        while len(probe.block_t0) + len(not_started()) < len(positions):
            if time.monotonic() - t_start > args.start_timeout:
                raise SystemExit(
                    f"only {len(probe.block_t0)} channels started in {args.start_timeout:g} s"
                )
            await asyncio.sleep(0.2)
        started_s = time.monotonic() - t_start
        # settle: the last runs to start learn where their records fall (pacing.py)
        await asyncio.sleep(args.settle)
        await probe.match_clocks()
        probe.measuring = True
        wall0, cpu0 = time.monotonic(), time.process_time()
        times0, threads0 = os.times(), thread_cpu()
        lag: list[float] = []
        lagger = asyncio.create_task(_loop_lag(lag))
        await asyncio.sleep(args.seconds)
        lagger.cancel()
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        times1, threads1 = os.times(), thread_cpu()
        open_files = _open_files()
        probe.measuring = False
        probe.work_out()
        never = {j.run_id for j in not_started()}
        never_why = collections.Counter(
            re.sub(r"\d+", "N", str(j.reason))[:120] for j in not_started()
        )
        failed = [
            j for j in sched.jobs()
            if j.state.value not in ("running", "paused") and j.run_id not in never
        ]  # fmt: skip
        sched.stop(at_once=True, reason="benchmark over")
        await sched.wait_all()
    return {
        "probe": probe,
        "wall": wall,
        "cpu": cpu,
        "user": times1.user - times0.user,
        "system": times1.system - times0.system,
        "threads": {k: v - threads0.get(k, 0.0) for k, v in threads1.items()},
        "started_s": started_s,
        "failed": [(j.run_id, j.state.value, j.reason) for j in failed],
        "never_started": len(never),
        "never_why": never_why,
        "lag": lag,
        "watchdog_trips": sched.watchdog_trips,
        "open_files": open_files,
    }


def _open_files() -> dict[str, int]:
    """This process's open file descriptors by kind (sockets, the journals' files, ...)."""
    kinds: collections.Counter[str] = collections.Counter()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:"):
            kinds["sockets"] += 1
        elif target.endswith(("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm")):
            kinds["journal files"] += 1
        elif target.endswith(".arrow"):
            kinds["staging files"] += 1
        elif target.endswith("events.jsonl"):
            kinds["event files"] += 1
        else:
            kinds["other"] += 1
    return dict(kinds)


async def _loop_lag(out: list[float]) -> None:
    """How late a 0.1 s sleep wakes: the event loop's backlog (and the host's)."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(0.1)
        out.append(time.monotonic() - t - 0.1)


@contextlib.asynccontextmanager
async def _tmpdir() -> Any:
    with tempfile.TemporaryDirectory(prefix="labrig-bench-") as d:
        yield d


def _raise_file_limit(want: int = 65536) -> None:
    """A run holds four files (its instrument link and its journal's database, WAL and
    shared memory; the staging log and events.jsonl are open only while written):
    4,096 runs need more than a default limit of open files."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    with contextlib.suppress(ValueError, OSError):  # raising the hard limit needs root
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(args: argparse.Namespace) -> None:
    _raise_file_limit()
    from labrig.orchestrator.clock import real_time_loop_factory, run_real_time
    from labrig.orchestrator.mqtt import MqttSettings
    from labrig.orchestrator.mqtt.testing import LocalMosquitto, MosquittoNotFound

    n = args.testers * args.channels
    procs, urls = start_testers(args.testers, args.channels)
    broker = None
    sub = None
    sub_out = tempfile.NamedTemporaryFile("w+b", suffix=".log")  # noqa: SIM115
    mqtt = None
    tmp = tempfile.TemporaryDirectory()
    try:
        if not args.no_mqtt and shutil.which("mosquitto_sub"):
            try:
                broker = LocalMosquitto(Path(tmp.name) / "broker")
                broker.start()
                mqtt = MqttSettings.from_url(broker.url("rig-a"), station="rig-a")
                viewer = MqttSettings.from_url(broker.url("viewer"))
                sub = subprocess.Popen(
                    ["mosquitto_sub", "-h", viewer.host, "-p", str(viewer.port),
                     "-u", viewer.username or "", "-P", viewer.password or "",
                     "-t", f"{mqtt.prefix}/+/telemetry", "-F", "%U %p", "--nodelay"],
                    stdout=sub_out, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            except (MosquittoNotFound, OSError, subprocess.SubprocessError) as exc:
                print(f"MQTT unavailable: {exc}")
                mqtt = None
        # the loop `labrig run` / `labrig daemon` use on this machine (uvloop where installed)
        res = run_real_time(orchestrate(args, urls, mqtt))
    finally:
        if sub is not None:
            sub.terminate()
            sub.wait(10)
        if broker is not None:
            broker.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        tmp.cleanup()
    probe: Probe = res["probe"]
    mqtt_delay: list[float] = []
    if sub is not None:
        offset = time.time() - time.monotonic()  # monotonic -> wall, machine-wide
        sub_out.seek(0)
        for line in sub_out.read().decode(errors="replace").splitlines():
            stamp, _, payload = line.partition(" ")
            try:
                d = json.loads(payload)
                t_rec = probe.by_voltage.get((d["channel"], float(d["voltage_V"])))
            except (ValueError, KeyError, TypeError):
                continue
            if t_rec is not None:
                mqtt_delay.append(float(stamp) - (t_rec + offset))
    sub_out.close()
    cpu_pct = 100 * res["cpu"] / res["wall"]
    print(f"channels          {n} ({args.testers} MacNet testers x {args.channels}), 1 Hz records")
    print(
        f"all started in    {res['started_s']:.1f} s; then {args.settle:g} s to settle; "
        f"measured {res['wall']:.0f} s real time"
    )
    sc = [c * 1e3 for c in probe.start_call]
    print(f"start_block call  p50 {percentile(sc, 50):.0f} ms, max {max(sc, default=0):.0f} ms")
    rt = [c * 1e3 for c in probe.read_rtt]
    print(f"clock match RTT   p50 {percentile(rt, 50):.0f} ms, max {max(rt, default=0):.0f} ms")
    print(f"rows stored       {probe.rows:,} ({probe.rows / res['wall']:.0f} rows/s)")
    loop_name = real_time_loop_factory().__module__.split(".")[0]
    n_channels = args.testers * args.channels
    # the figures: <= 30 % at 1,024 channels; the goal at 4,096 is under half a core
    aim = "target <= 30 %" if n_channels <= 1024 else "goal < 50 %"
    print(f"orchestrator CPU  {cpu_pct:.1f} % of one core ({aim}; loop: {loop_name})")
    print(
        f"  user {100 * res['user'] / res['wall']:.1f} %, "
        f"system {100 * res['system'] / res['wall']:.1f} %; by thread: "
        + ", ".join(
            f"{k} {100 * v / res['wall']:.1f} %"
            for k, v in sorted(res["threads"].items(), key=lambda kv: -kv[1])
            if v > 0
        )
    )
    lg = [d * 1e3 for d in res["lag"]]
    print(
        f"event loop lag    p50 {percentile(lg, 50):.0f} ms, p99 {percentile(lg, 99):.0f} ms "
        f"(a 0.1 s sleep's oversleep); load average {os.getloadavg()[0]:.2f}"
    )
    sd = [d * 1e3 for d in probe.store_delay]
    print(
        f"record -> storage p50 {percentile(sd, 50):.0f} ms, p99 {percentile(sd, 99):.0f} ms "
        f"(status every {args.poll:g} s, records collected every {args.collect:g} s)"
    )
    nd = [d * 1e3 for d in probe.newest_delay]
    print(
        f"newest -> handed p50 {percentile(nd, 50):.0f} ms, p99 {percentile(nd, 99):.0f} ms "
        "(each collection's newest record, the one its telemetry carries)"
    )
    td = [d * 1e3 for d in probe.telemetry_delay]
    print(
        f"record -> telemetry handed to the publisher p50 {percentile(td, 50):.0f} ms, "
        f"p99 {percentile(td, 99):.0f} ms"
    )
    if mqtt is None:
        print("record -> MQTT    n/a (no broker)")
    else:
        md = [d * 1e3 for d in mqtt_delay]
        print(
            f"record -> MQTT    p50 {percentile(md, 50):.0f} ms, p99 {percentile(md, 99):.0f} ms "
            f"({len(md):,} telemetry messages matched; p90 {percentile(md, 90):.0f} ms, "
            f"{sum(d > 500 for d in md) / max(1, len(md)):.1%} over 500 ms)"
        )
    print(f"runs that ended before they started: {res['never_started']}")
    for why, count in res["never_why"].most_common(3):
        print(f"    {count} x {why}")
    print(f"runs not running at the end of the window: {len(res['failed'])}")
    why = collections.Counter(re.sub(r"\d+", "N", str(f[2]))[:120] for f in res["failed"])
    for reason, count in why.most_common(3):
        print(f"    {count} x {reason}")
    print(f"watchdog trips    {res['watchdog_trips']}")
    files = res["open_files"]
    print(
        f"open files        {sum(files.values()):,} ({sum(files.values()) / n:.1f} per run): "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(files.items()))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--testers", type=int, default=8)
    ap.add_argument("--channels", type=int, default=128, help="channels per tester")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--poll", type=float, default=1.0, help="block-end status poll period (s)")
    ap.add_argument(
        "--collect", type=float, default=2.0,
        help="record collection period (s); each collection is placed just after a record",
    )  # fmt: skip
    ap.add_argument(
        "--settle", type=float, default=20.0,
        help="seconds between the last run's start and the measurement (s)",
    )  # fmt: skip
    ap.add_argument("--no-mqtt", action="store_true")
    ap.add_argument(
        "--timeout", type=float, default=10.0, help="MacNet request timeout (s) of the driver"
    )
    ap.add_argument(
        "--start-timeout", type=float, default=300.0,
        help="give up when not every run started within this (s; a loaded machine is slow)",
    )  # fmt: skip
    ap.add_argument("--serve-sim", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_sim is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_sim(args.serve_sim, args.channels))
        return
    run(args)


if __name__ == "__main__":
    main()

"""Benchmark: many channels of telemetry through MqttPublisher to a real Mosquitto.

    python bench/mqtt.py                      # private broker with the shipped config
    python bench/mqtt.py --url mqtt://127.0.0.1:1883 --seconds 20
    python bench/mqtt.py --burst              # every channel at the same instant

Prints the latency from the ``publish_telemetry`` call to receipt by a subscriber
(``mosquitto_sub`` in its own process, so it costs this process nothing), the delivered
message rate, the CPU used by this (the publisher's) process, the duration of the
``publish_telemetry`` calls themselves, and the publisher's drop counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labrig.orchestrator.events import Telemetry  # noqa: E402
from labrig.orchestrator.mqtt import MqttPublisher, MqttSettings, PublisherStats  # noqa: E402
from labrig.orchestrator.mqtt.testing import LocalMosquitto  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def produce(
    pub: MqttPublisher, channels: int, hz: float, seconds: float, burst: bool
) -> list[float]:
    """Call publish_telemetry for every channel at ``hz``; returns call durations (s)."""
    names = [f"ch{i:04d}" for i in range(channels)]
    period = 1.0 / hz
    call_s: list[float] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tick = 0.01  # publish the channels whose slot fell in each 10 ms window
    k = 0
    while True:
        now = loop.time() - t0
        if now >= seconds:
            return call_s
        # Spread: channel i is due at i/channels of each period; burst: all at 0.
        due_until = int(now / period * channels) if not burst else int(now / period + 1) * channels
        while k < due_until:
            i = k % channels
            t = Telemetry("bench", names[i], time.time(), now, 3.7, 0.5, 25.0, k // channels, 1)
            c0 = time.perf_counter()
            pub.publish_telemetry(t)
            call_s.append(time.perf_counter() - c0)
            k += 1
        await asyncio.sleep(tick)


async def publish(
    args: argparse.Namespace, settings: MqttSettings
) -> tuple[list[float], float, float, PublisherStats]:
    """Run the load; returns call durations, wall and CPU seconds, and the counters."""
    await asyncio.sleep(0.5)  # let the subscriber subscribe
    async with MqttPublisher(settings) as pub:
        if not await pub.wait_connected(10):
            raise SystemExit(f"cannot connect to {settings.url}")
        wall0, cpu0 = time.perf_counter(), cpu_s()
        calls = await produce(pub, args.channels, args.hz, args.seconds, args.burst)
        await pub.flush(10)
        wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
        stats = pub.stats
    await asyncio.sleep(1.0)  # let the last messages land
    return calls, wall, cpu, stats


def bench(args: argparse.Namespace, settings: MqttSettings, sub_cmd: list[str]) -> None:
    with tempfile.NamedTemporaryFile("w+b", suffix=".log") as out:
        sub = subprocess.Popen(sub_cmd, stdout=out, stderr=subprocess.DEVNULL)
        try:
            calls, wall, cpu, stats = asyncio.run(publish(args, settings))
        finally:
            sub.terminate()
            sub.wait(10)
        out.seek(0)
        lat_ms: list[float] = []
        received = 0
        for line in out.read().decode(errors="replace").splitlines():
            stamp, _, payload = line.partition(" ")
            try:
                sent = json.loads(payload)["wall_time"]
                lat_ms.append((float(stamp) - sent) * 1e3)
                received += 1
            except (ValueError, KeyError):
                continue
    warm = lat_ms[len(lat_ms) // 10 :]  # drop the first 10 % (connection warm-up)
    mode = "burst (all channels at once)" if args.burst else "spread evenly"
    print(f"broker            {settings.url}")
    print(f"load              {args.channels} channels x {args.hz} Hz, {mode}, {wall:.1f} s")
    print(f"received          {received} messages, {received / wall:.0f} msg/s")
    print(
        f"latency call->sub p50 {percentile(warm, 50):.2f} ms, p99 {percentile(warm, 99):.2f} ms,"
        f" max {max(warm, default=float('nan')):.2f} ms"
    )
    call_us = [c * 1e6 for c in calls]
    print(
        f"publish_telemetry call p50 {percentile(call_us, 50):.1f} us, "
        f"p99 {percentile(call_us, 99):.1f} us, max {max(call_us):.0f} us"
    )
    print(f"publisher CPU     {100 * cpu / wall:.1f} % of one core (whole process)")
    print(
        f"drops             rate-limited {stats.telemetry_rate_limited}, "
        f"dropped {stats.telemetry_dropped}, published {stats.telemetry_published} "
        f"of {stats.telemetry_accepted} accepted"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="use this broker instead of starting one")
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--hz", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--burst", action="store_true", help="all channels at the same instant")
    args = ap.parse_args()
    if shutil.which("mosquitto_sub") is None:
        raise SystemExit("mosquitto_sub is needed (package mosquitto-clients)")
    with tempfile.TemporaryDirectory() as tmp:
        broker: LocalMosquitto | None = None
        if args.url:
            settings = MqttSettings.from_url(args.url, station="bench", telemetry_hz=args.hz)
            sub_settings = settings
        else:
            broker = LocalMosquitto(Path(tmp) / "broker")
            broker.start()
            settings = MqttSettings.from_url(
                broker.url("rig-a"), station="rig-a", telemetry_hz=args.hz
            )
            sub_settings = MqttSettings.from_url(broker.url("viewer"))
        sub_cmd = [
            "mosquitto_sub",
            "-h",
            sub_settings.host,
            "-p",
            str(sub_settings.port),
            "-t",
            f"{settings.prefix}/+/telemetry",
            "-F",
            "%U %p",
            "--nodelay",
        ]
        if sub_settings.username:
            sub_cmd += ["-u", sub_settings.username, "-P", sub_settings.password or ""]
        try:
            bench(args, settings, sub_cmd)
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()

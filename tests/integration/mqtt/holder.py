"""A process that holds a connected MqttPublisher until it is killed (for the last-will test).

Run as ``python -m tests.integration.mqtt.holder <url> <station>``; prints ``ready``.
"""

from __future__ import annotations

import asyncio
import sys

from labrig.orchestrator.mqtt import MqttPublisher, MqttSettings


async def main(url: str, station: str) -> None:
    settings = MqttSettings.from_url(url, station=station, keepalive_s=2)
    async with MqttPublisher(settings) as pub:
        if not await pub.wait_connected(10):
            print("not connected", flush=True)
            return
        print("ready", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

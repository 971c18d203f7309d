"""Modbus RTU reads through the driver's bus (pymodbus) against the furnace simulator.

Reads the process value ``--reads`` times over loopback TCP on the virtual clock, through
:class:`labrig.drivers.modbus.ModbusRtuBus`, and - as the reference, in the same process
against the same simulator - as bare frames on an asyncio stream (write the request,
read the 7-byte reply, no checks). Prints the median time per read of ``--rounds``
rounds each and the ratio: what framing, checks and typed errors cost per request.

    python bench/modbus_bus.py [--reads 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from labrig.drivers.modbus import ModbusRtuBus
from labrig.orchestrator.clock import run_virtual
from labrig.simulators.furnace import start_eurotherm_sim

READ_PV = bytes.fromhex("01 03 00 01 00 01 d5 ca")


async def through_bus(address: str, reads: int) -> float:
    async with ModbusRtuBus(address) as bus:
        t0 = time.perf_counter()
        for _ in range(reads):
            await bus.read_registers(1, 1, 1)
        return (time.perf_counter() - t0) / reads


async def bare_frames(address: str, reads: int) -> float:
    host, port = address.removeprefix("tcp://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        t0 = time.perf_counter()
        for _ in range(reads):
            writer.write(READ_PV)
            await reader.readexactly(7)
        return (time.perf_counter() - t0) / reads
    finally:
        writer.close()
        await writer.wait_closed()


async def main(reads: int, rounds: int) -> tuple[list[float], list[float]]:
    bus: list[float] = []
    bare: list[float] = []
    async with await start_eurotherm_sim() as sim:
        for _ in range(rounds):
            bus.append(await through_bus(sim.address, reads))
            bare.append(await bare_frames(sim.address, reads))
    return bus, bare


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    bus, bare = run_virtual(main(args.reads, args.rounds))
    m_bus, m_bare = statistics.median(bus), statistics.median(bare)
    print(f"reads per round            {args.reads} x {args.rounds} rounds")
    print(f"ModbusRtuBus (pymodbus)    {m_bus * 1e6:8.1f} µs per read (median)")
    print(f"reference: bare frames     {m_bare * 1e6:8.1f} µs per read (median)")
    print(f"ratio                      {m_bus / m_bare:8.2f}x")

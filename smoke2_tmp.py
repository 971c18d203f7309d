import asyncio, numpy as np
from labrig.drivers.biologic import open_biologic
from labrig.drivers.capabilities import EisRequest, ChannelLimits, ChannelStep, EndCondition, RecordRule
from labrig.simulators.biologic import simulate_biologic
from labrig.simulators.engine import ChannelEngine
from tests.helpers import run_virtual_strict

async def main():
    loop = asyncio.get_running_loop()
    eng = ChannelEngine(None, seed=1, now=loop.time(), noise=0)
    async with simulate_biologic([eng], model="VMP-300") as sim:
        async with open_biologic(model="VMP-300", address=sim.address, library=sim.library, channel=0, poll_s=30) as ch:
            await ch.set_limits(ChannelLimits(2.0, 3.9, 0.01))
            i = 200e-3*8.4e-3*0.5
            steps = [ChannelStep(1, "cc", "charge", current_A=i, ends=(EndCondition("voltage", ">=", 3.68),), record=RecordRule(every_s=300)),
                     ChannelStep(3, "cccv", "discharge", current_A=-i, voltage_V=2.28, cv_ends=(EndCondition("current", "<=", i/10),), record=RecordRule(every_s=300))]
            await ch.start_block(1, steps)
            r = await ch.wait_block(poll_s=600)
            for e in r.steps: print(e)
            b = await ch.read_records(0)
            for k in range(len(b)):
                print(b.seq[k], round(b.time_s[k],4), b.step_id[k], b.current_A[k], b.voltage_V[k], b.step_charge_Ah[k])
run_virtual_strict(main())

import asyncio, numpy as np
from labrig.drivers.biologic import open_biologic
from labrig.drivers.capabilities import EisRequest, ChannelLimits, ChannelStep, EndCondition, RecordRule
from labrig.simulators.biologic import simulate_biologic
from labrig.simulators.engine import ChannelEngine
from tests.helpers import run_virtual_strict

async def main():
    loop = asyncio.get_running_loop()
    eng = ChannelEngine(None, seed=1, now=loop.time())
    async with simulate_biologic([eng], model="VMP-300") as sim:
        async with open_biologic(model="VMP-300", address=sim.address, library=sim.library, channel=0, poll_s=30) as ch:
            v = await ch.measure_ocv(10)
            print("ocv", v)
            f = tuple(np.logspace(np.log10(7e6), -1, 43))
            res = await ch.measure_eis(EisRequest(f, amplitude_V=0.01))
            z = eng.measure_impedance(np.asarray(f), loop.time())
            print("eis", res.duration_s, np.max(np.abs((res.z_real_ohm + 1j*res.z_imag_ohm) - z)/np.abs(z)))
            await ch.set_limits(ChannelLimits(2.0, 3.9, 0.01))
            i = 200e-3*8.4e-3*0.5
            steps = [ChannelStep(1, "cc", "charge", current_A=i, ends=(EndCondition("voltage", ">=", 3.68),), record=RecordRule(every_s=30)),
                     ChannelStep(2, "rest", "rest", ends=(EndCondition("time", ">=", 600),), record=RecordRule(every_s=60)),
                     ChannelStep(3, "cccv", "discharge", current_A=-i, voltage_V=2.28, cv_ends=(EndCondition("current", "<=", i/10),), record=RecordRule(every_s=30))]
            await ch.start_block(1, steps)
            r = await ch.wait_block(poll_s=600)
            print(r)
            b = await ch.read_records(0)
            print(len(b), b.time_s[:3], b.time_s[-3:], np.all(np.diff(b.time_s)>=0), b.step_id[-1], b.voltage_V[-1], b.current_A[-1])
            print(sim.library.calls[:12], len(sim.library.calls))
run_virtual_strict(main())

"""MaccorChannel against the MacNet simulator over loopback TCP, on the virtual clock."""

from __future__ import annotations

import numpy as np

from labrig.drivers.capabilities import ChannelLimits, ChannelState, CyclerChannel
from labrig.drivers.maccor import MaccorCycler
from labrig.simulators.maccor import serve_maccor
from tests.helpers import run_virtual_strict

from .conftest import ONE_C_A, V_MAX, V_MIN, cycle_block

LIMITS = ChannelLimits(v_min_V=2.0, v_max_V=3.9, i_max_A=0.01)


def test_short_rate_test_on_one_channel() -> None:
    async def main() -> None:
        async with serve_maccor(2) as srv, MaccorCycler.from_url(srv.url, channels=[1]) as cyc:
            ch = cyc.channel(1)
            assert isinstance(ch, CyclerChannel)
            await ch.set_limits(LIMITS)
            assert (await ch.get_limits()).matches(LIMITS)
            seq = 0
            caps = []
            for n, c_rate in enumerate((0.1, 0.5, 1.0)):
                await ch.start_block(n + 1, cycle_block(10 * n, c_rate))
                await ch.start_block(n + 1, cycle_block(10 * n, c_rate))  # no-op
                res = await ch.wait_block(poll_s=300)
                assert res.state == ChannelState.done, res
                assert [e.step_id for e in res.steps] == [10 * n, 10 * n + 1]
                assert [e.reason for e in res.steps] == ["voltage", "voltage"]
                assert res.steps[0].end_voltage_V >= V_MAX - 0.01
                assert res.steps[1].end_voltage_V <= V_MIN + 0.01
                assert res.steps[0].charge_Ah > 0 > res.steps[1].charge_Ah
                caps.append(-res.steps[1].charge_Ah)
                batch = await ch.read_records(seq)
                assert len(batch) > 10
                assert np.all(np.diff(batch.seq) > 0) and batch.seq[0] > seq
                assert np.all(np.diff(batch.time_s) >= 0)
                assert set(batch.step_id.tolist()) == {10 * n, 10 * n + 1}
                charging = batch.step_id == 10 * n
                assert np.allclose(batch.current_A[charging], ONE_C_A * c_rate, atol=3e-5)
                seq = int(batch.seq[-1])
                assert len(await ch.read_records(seq)) == 0
            # faster discharge gives less capacity
            assert caps[0] > caps[1] > caps[2] > 0
            st = await ch.status()
            assert st.state == ChannelState.done and st.last_seq == seq
            await ch.safe_state()
            assert (await ch.status()).state == ChannelState.idle

    run_virtual_strict(main())

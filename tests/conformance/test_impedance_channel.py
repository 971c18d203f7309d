"""ImpedanceChannel conformance: the PalmSens driver against its MethodSCRIPT simulator,
the in-process SimImpedanceChannel, and whatever joins :mod:`.implementations`."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from labrig.drivers.capabilities import EisRequest, EisResult, ImpedanceChannel
from labrig.orchestrator.instruments import Capability

from .implementations import Impl, ids, implementations
from .support import run_connected

IMPLS = implementations(Capability.impedance)
each = pytest.mark.parametrize("impl", IMPLS, ids=ids(IMPLS))


def _request(f_hi: float, f_lo: float, n: int) -> EisRequest:
    freqs = tuple(float(f) for f in np.logspace(math.log10(f_hi), math.log10(f_lo), n))
    return EisRequest(frequencies_Hz=freqs, amplitude_V=0.01)


def test_every_impedance_channel_is_covered() -> None:
    assert {"palmsens", "sim-eis", "remote"} <= set(ids(IMPLS))


@each
def test_is_an_impedance_channel_with_a_name(impl: Impl) -> None:
    async def body(ch: ImpedanceChannel) -> None:
        assert isinstance(ch, ImpedanceChannel)
        assert ch.name

    run_connected(impl, body)


@each
def test_eis_returns_the_requested_frequencies_in_order(impl: Impl) -> None:
    wide, narrow = _request(1e5, 1.0, 11), _request(2e3, 20.0, 5)

    async def body(ch: ImpedanceChannel) -> tuple[EisResult, EisResult]:
        return await ch.measure_eis(wide), await ch.measure_eis(narrow)

    results = run_connected(impl, body)
    for request, result in zip((wide, narrow), results, strict=True):
        asked = np.asarray(request.frequencies_Hz)
        assert result.frequency_Hz.shape == asked.shape
        np.testing.assert_allclose(result.frequency_Hz, asked, rtol=1e-3)
        for z in (result.z_real_ohm, result.z_imag_ohm):
            assert z.shape == asked.shape and np.all(np.isfinite(z))
        assert np.all(result.z_real_ohm > 0)
        # a cell is capacitive at low frequency: the imaginary part is negative there
        assert result.z_imag_ohm[-1] < 0
        assert math.isfinite(result.dc_voltage_V) and 1.0 < result.dc_voltage_V < 5.0
        assert result.duration_s > 0
    wide_r, narrow_r = results
    # the spectrum is measured, not made up: |Z| rises towards low frequency
    assert abs(complex(wide_r.z_real_ohm[-1], wide_r.z_imag_ohm[-1])) > abs(
        complex(wide_r.z_real_ohm[0], wide_r.z_imag_ohm[0])
    )
    assert narrow_r.frequency_Hz.shape == (5,)


@each
def test_ocv_is_measured_over_the_duration_and_bad_durations_are_refused(impl: Impl) -> None:
    async def body(ch: ImpedanceChannel) -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        v = await ch.measure_ocv(30.0)
        assert loop.time() - t0 >= 30.0 - 1e-6  # it rested the whole duration
        for bad in (0.0, -1.0, math.nan, math.inf):
            with pytest.raises(ValueError):
                await ch.measure_ocv(bad)
        return v

    v = run_connected(impl, body)
    assert 1.0 < v < 5.0


@each
def test_safe_state_is_idempotent_and_the_channel_measures_again(impl: Impl) -> None:
    async def body(ch: ImpedanceChannel) -> EisResult:
        await ch.safe_state()
        await ch.safe_state()
        result = await ch.measure_eis(_request(1e3, 10.0, 3))
        await ch.safe_state()
        return result

    assert run_connected(impl, body).frequency_Hz.shape == (3,)

"""``driver: remote``: a station file names another agent's instrument as an instrument of
its own; validation and opening go through the instrument registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labrig.drivers.capabilities import InstrumentError
from labrig.orchestrator.instruments import OpenRequest, entry
from labrig.orchestrator.lab.config import load_agent_config
from labrig.orchestrator.station import StationError

STATION = """\
name: pc-r
instruments:
  cycler: {driver: maccor, address: "tcp://127.0.0.1:57570", channels: 2}
  eis: {driver: remote, address: "lab://eis-pc/vmp", channels: 2}
positions:
  - {name: r0, cycler: cycler/0, impedance: eis/1}
  - {name: r1, cycler: cycler/1}
"""


def test_a_remote_instrument_is_a_station_instrument(tmp_path: Path) -> None:
    path = tmp_path / "pc-r.yaml"
    path.write_text(STATION)
    cfg = load_agent_config(path)
    assert cfg.remote == {"eis": ("eis-pc", "vmp")}
    assert cfg.needs_remote()
    assert cfg.station is not None and cfg.station.positions[0].impedance == "eis/1"
    # the lab database sees where the EIS really is
    assert [p.impedance for p in cfg.positions] == ["eis-pc:vmp/1", None]


@pytest.mark.parametrize(
    ("address", "said"),
    [("lab://eis-pc", "lab://AGENT/INSTRUMENT"), ("tcp://eis-pc:1", "lab://AGENT/INSTRUMENT")],
)
def test_a_bad_remote_address_names_file_and_field(tmp_path: Path, address: str, said: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(STATION.replace("lab://eis-pc/vmp", address))
    with pytest.raises(StationError) as err:
        load_agent_config(path)
    assert f"{path}: instruments.eis.address" in str(err.value) and said in str(err.value)


def test_remote_options_are_checked_by_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(STATION.replace("channels: 2}\npos", "options: {capability: cycler}}\npos"))
    with pytest.raises(StationError) as err:
        load_agent_config(path)
    assert "instruments.eis.options" in str(err.value)


def test_opening_a_remote_instrument_outside_an_agent_is_a_clear_error() -> None:
    remote = entry("remote")
    opener = remote.open
    assert opener is not None
    req = OpenRequest("eis", "lab://eis-pc/vmp", 1, remote.parse_options({}), {0: "impedance"})

    async def main() -> None:
        async with opener(req):
            pass

    with pytest.raises(InstrumentError, match="only `labrig agent --lab URL` reaches it"):
        asyncio.run(main())


def test_a_dry_run_puts_a_simulator_in_place_of_a_remote_instrument() -> None:
    import contextlib

    from labrig.orchestrator.clock import run_virtual
    from labrig.orchestrator.instruments.registry import InstrumentUse
    from labrig.orchestrator.instruments.sim.cell import SimCell
    from labrig.orchestrator.instruments.sim.station import simulate

    remote = entry("remote")
    use = InstrumentUse(remote, "eis", "lab://eis-pc/vmp", 1, remote.parse_options({}),
                        {0: "impedance"})  # fmt: skip

    async def main() -> float:
        async with contextlib.AsyncExitStack() as stack:
            sim = await stack.enter_async_context(simulate(use, SimCell(None, seed=0)))
            ch = (await sim.connect(stack)).impedance_channel(0)
            return await ch.measure_ocv(1.0)

    assert 1.0 < run_virtual(main()) < 5.0

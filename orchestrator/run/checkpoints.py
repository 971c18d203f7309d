"""Units of work on instruments other than the cycler, by step type.

A cell run meets these between blocks of cycler steps (the cycler channel is then at
open circuit): an EIS sweep on the impedance channel, a chamber setpoint. Each step type
has one :class:`UnitHandler` in :data:`UNIT_HANDLERS`: its name in the journal, how to
run it, and what a restart that interrupted it means. A new kind of checkpoint is a
handler and a table entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from labrig.drivers.capabilities import EisRequest, ImpedanceChannel
from labrig.protocols.models import ChamberStep, EisStep

from ..events import EventKind, RunState
from .cellrun import CellRunState
from .lifecycle import RunAborted

__all__ = ["UNIT_HANDLERS", "UnitHandler", "run_eis", "set_chamber", "unit_handler"]

T = TypeVar("T")


@dataclass(frozen=True)
class UnitHandler:
    """How a cell run carries out one kind of non-cycler step.

    ``kind`` names the unit in the journal. ``interrupted`` is asked when a restart
    found the unit started but not done: True skips it (it counts as done), False runs
    it again; it may raise :class:`RunAborted`.
    """

    kind: str
    run: Callable[[CellRunState, Any], Awaitable[None]]
    interrupted: Callable[[CellRunState, Any], bool]


def _bound(channel: T | None, step: str, instrument: str) -> T:
    """The run's ``instrument`` for a step that needs it; a failed run without one."""
    if channel is None:
        raise RunAborted(
            f"this protocol {step} but the station has no {instrument} for this cell",
            RunState.failed,
        )
    return channel


async def run_eis(run: CellRunState, step: EisStep) -> None:
    """An impedance sweep on the run's impedance channel, booked while it measures."""
    imp = _bound(run.bind.impedance, "has an EIS step", "impedance channel")
    run._emit(
        EventKind.step_started,
        step=step.text or "EIS",
        step_type="eis",
        cycle=run.cycles.cycle,
    )
    if step.rest_before_s > 0:
        await run.clock.sleep(step.rest_before_s)
    resource = f"impedance:{imp.name}"
    t_wait = run.clock.now()
    async with run.bind.booking(resource):
        waited = run.clock.now() - t_wait
        if waited > 0:
            run._emit(EventKind.wait, resource=resource, seconds=waited)
        res = await _measure_eis(imp, step)
    path = run.store.write_eis(
        run.cycles.cycle,
        res.frequency_Hz,
        res.z_real_ohm,
        res.z_imag_ohm,
        meta={"dc_voltage_V": res.dc_voltage_V, "run_time_s": run.run_time()},
    )
    run.steps_done += 1
    run._emit(
        EventKind.step_ended,
        step=step.text or "EIS",
        step_type="eis",
        file=str(path.relative_to(run.store.root)),
        duration_s=res.duration_s,
        cycle=run.cycles.cycle,
    )


async def _measure_eis(imp: ImpedanceChannel, step: EisStep) -> Any:
    req = EisRequest(
        frequencies_Hz=tuple(step.frequencies_Hz()),
        amplitude_V=step.amplitude_V,
        amplitude_A=step.amplitude_A,
        bias=step.bias,
        bias_V=step.bias_V,
        bias_A=step.bias_A,
    )
    return await imp.measure_eis(req)


def _eis_interrupted(run: CellRunState, step: EisStep) -> bool:
    policy = step.on_interrupt
    run._emit(EventKind.notify, message=f"EIS interrupted by a restart: {policy}")
    if policy == "abort":
        raise RunAborted("an EIS sweep was interrupted and its policy is abort")
    return policy == "skip"


async def set_chamber(run: CellRunState, step: ChamberStep) -> None:
    """A chamber setpoint, waited on until stable when the step says so."""
    ch = _bound(run.bind.chamber, "sets a chamber temperature", "chamber")
    await ch.set_temperature(step.setpoint_C)
    rule = step.wait
    if rule is None:
        return
    t_start = run.clock.now()
    stable_since: float | None = None
    while True:
        t = await ch.read_temperature()
        now = run.clock.now()
        if abs(t - step.setpoint_C) <= rule.tolerance_K:
            stable_since = now if stable_since is None else stable_since
            if now - stable_since >= rule.hold_s:
                return
        else:
            stable_since = None
        if rule.timeout_s is not None and now - t_start > rule.timeout_s:
            if rule.on_timeout == "abort":
                raise RunAborted(
                    f"chamber did not reach {step.setpoint_C} °C ± {rule.tolerance_K} K "
                    f"within {rule.timeout_s:.0f} s (at {t:.2f} °C)",
                    RunState.failed,
                )
            return
        await run.clock.sleep(min(30.0, max(1.0, rule.hold_s / 10)))


def _run_again(_run: CellRunState, _step: Any) -> bool:
    return False


UNIT_HANDLERS: dict[type, UnitHandler] = {
    EisStep: UnitHandler("eis", run_eis, _eis_interrupted),
    ChamberStep: UnitHandler("chamber", set_chamber, _run_again),
}


def unit_handler(node: Any) -> UnitHandler | None:
    """The handler for ``node``'s step type, or None when it is not a unit of its own."""
    return UNIT_HANDLERS.get(type(node))

"""``labrig run``: run a protocol, on hardware or (``--sim``) on the simulated station."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ..events import RunState
from ..instruments.sim.presets import check_preset
from ._format import duration_text
from ._interrupt import Interrupted, Stopper, interruptible, signals_handled
from ._options import PositionOption, SetOption, StationOption, parse_sets
from ._paths import writable_dir_or_exit

if TYPE_CHECKING:
    from ..run.lifecycle import RunLifecycle, RunOutcome

__all__ = ["register"]

err = Console(stderr=True)
out = Console()


def _fmt_hours(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    h = seconds / 3600.0
    if h >= 48:
        return f"{h / 24:,.1f} d"
    if h >= 1:
        return f"{h:,.1f} h"
    return f"{seconds / 60:,.1f} min"


class _SimTimeColumn(ProgressColumn):
    """Cycle, step, run time and ETA in one short, unwrapped line."""

    def render(self, task: Task) -> Text:
        f = task.fields
        return Text(
            f"cycle {f.get('cycle', 1)} · {f.get('step', '')[:20]} · "
            f"{_fmt_hours(f.get('sim_s'))} · ETA {f.get('eta', '–')}",
            style="cyan",
            no_wrap=True,
            overflow="ellipsis",
        )


_parse_sets = parse_sets  # the name `labrig submit` imports


def check_compiles(proto: Any, sim: bool) -> None:
    """Every cycler step compiles, and a simulated cell's preset exists: before any run
    directory is made (ValueError otherwise)."""
    from ..compile import StepCompiler, is_cycler_step

    compiler = StepCompiler(proto, proto.cell)
    for s in proto.steps():
        if is_cycler_step(s):
            compiler.compile(s)
    if sim:
        check_preset(proto.cell)


def _refuse_beyond_station(
    protocol_arg: str, proto: Any, station: Any, position: Any, kind: str
) -> None:
    """Exit 2, before any run directory exists, if a step asks more than the position's
    instruments reach (an EIS frequency, a current, a setpoint, a flow)."""
    from ._station_check import range_summary, station_problems

    problems = station_problems(protocol_arg, proto, station, position, kind)
    if not problems:
        return
    for line in problems:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    err.print(
        f"error: {len(problems)} step(s) beyond what station {station.name!r}, position "
        f"{position.name!r} reaches ({range_summary(station, position)}); nothing was started",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(2)


_POLL_HELP = "Seconds between polls of the instrument (default: 10 on hardware)."


@interruptible
def run(
    protocol: Annotated[
        str, typer.Argument(help="A protocol file, or a name from `labrig library`.")
    ],
    sim: Annotated[bool, typer.Option("--sim", help="Run on simulated instruments.")] = False,
    station: StationOption = None,
    position: PositionOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where run directories go.")] = Path(
        "runs"
    ),
    set_: SetOption = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulated cell's noise.")] = 0,
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="Publish status to this broker URL.")
    ] = None,
    poll: Annotated[float | None, typer.Option("--poll", help=_POLL_HELP, min=0.001)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Run PROTOCOL and write a run directory of data and per-cycle results."""
    from labrig.protocols.errors import ProtocolError
    from labrig.protocols.loader import dump_protocol_yaml, load_protocol

    from ..executor import RunOptions
    from ..runner import RunRequest, execute_run, is_thermal
    from ..station import DEFAULT_STATION, StationError, load_station

    try:
        overrides = _parse_sets(set_ or [])
        proto = load_protocol(protocol, overrides=overrides or None)
        st = load_station(station) if station is not None else DEFAULT_STATION
        pos = st.position(position, "furnace" if is_thermal(proto) else "cell")
        check_compiles(proto, sim)
    except ProtocolError as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (StationError, ValueError, typer.BadParameter) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _refuse_beyond_station(protocol, proto, st, pos, "furnace" if is_thermal(proto) else "cell")
    if not sim and station is None:
        err.print(
            "error: no station file given; use --sim for a dry run on the built-in "
            "simulated station, or --station FILE for hardware"
        )
        raise typer.Exit(2)
    writable_dir_or_exit(out_dir, "--out", err)

    req = RunRequest(
        protocol=proto,
        protocol_yaml=dump_protocol_yaml(proto),
        out_dir=out_dir,
        station=st,
        position=position,
        sim=sim,
        seed=seed,
        options=RunOptions(poll_s=poll) if poll is not None else None,
    )

    def start(**kw: Any) -> Any:
        return execute_run(req, **kw)

    outcome, root = _run_with_display(req, start, sim=sim, mqtt=mqtt, quiet=quiet)
    _print_outcome(proto.name, outcome, root, sim)


_FROM_INSTRUMENT_HELP = (
    "For a damaged run: read its records back from the instrument into recovered/, set "
    "the damaged files aside in damaged/ and end the run (the instrument is only read)."
)
_ABORT_HELP = "For a damaged run: put its instrument channel in its safe state and end it."


def _run_meta(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of ``run_dir``; a path that is no run directory is a ValueError that
    names it (not an operating-system error number)."""
    import json

    if not run_dir.exists():
        raise ValueError("no such run directory")
    if not run_dir.is_dir():
        raise ValueError("not a run directory (it is a file)")
    path = run_dir / "run.json"
    if not path.is_file():
        raise ValueError("not a run directory (it has no run.json)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} cannot be read ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a run's metadata (not a JSON object)")
    return meta


def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run directory to continue.")],
    station: Annotated[
        Path | None,
        typer.Option("--station", help="Station file (default: the one the run started with)."),
    ] = None,
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="Publish status to this broker URL.")
    ] = None,
    poll: Annotated[float | None, typer.Option("--poll", help=_POLL_HELP, min=0.001)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    from_instrument: Annotated[
        bool, typer.Option("--from-instrument", help=_FROM_INSTRUMENT_HELP)
    ] = False,
    abort: Annotated[bool, typer.Option("--abort", help=_ABORT_HELP)] = False,
) -> None:
    """Continue a run after the orchestrator stopped (crash, kill, reboot).

    Re-attaches to the instruments, adopts a block they kept running, and goes on at the
    right step and cycle without losing or repeating a record. A damaged run (journal or
    data files) is refused with what is damaged (exit status 3); then choose
    --from-instrument or --abort.
    """

    from labrig.protocols.loader import load_protocol_text

    from ..executor import RunOptions
    from ..journal import JournalCorrupt
    from ..run.damage import ChannelHeld, RunDamaged
    from ..runner import RunRequest, resume_run
    from ..station import StationConfig, StationError, load_station
    from . import _damage

    try:
        meta = _run_meta(run_dir)
        if meta.get("state") in ("finished", "aborted", "failed"):
            raise ValueError(f"{run_dir} ended ({meta['state']}); there is nothing to resume")
        if meta.get("simulated") and station is None:
            raise ValueError(
                "it was a dry run: its simulated instruments ended with the process that "
                "ran them; run the protocol again (or give --station for instruments that "
                "kept running)"
            )
        st = (
            load_station(station)
            if station is not None
            else StationConfig.model_validate(meta["station_config"])
        )
        proto = load_protocol_text((run_dir / "protocol.yaml").read_text(), source_name="x")
    except (OSError, KeyError, ValueError, StationError) as exc:
        err.print(f"error: cannot resume {run_dir}: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if from_instrument or abort:
        _damage.choose(run_dir, st, from_instrument=from_instrument, abort=abort)
        return
    sim = bool(meta.get("simulated"))
    req = RunRequest(
        protocol=proto,
        protocol_yaml="",
        out_dir=run_dir.parent,
        station=st,
        position=meta.get("position"),
        sim=sim,
        run_id=meta["run_id"],
    )
    options = RunOptions(poll_s=poll) if poll is not None else None

    def start(**kw: Any) -> Any:
        return resume_run(run_dir, station=st, options=options, **kw)

    try:
        outcome, root = _run_with_display(req, start, sim=False, mqtt=mqtt, quiet=quiet)
    except (RunDamaged, ChannelHeld) as exc:
        raise _damage.refuse(exc) from None
    except JournalCorrupt as exc:
        err.print(f"error: the run's journal cannot be trusted: {exc}", markup=False)
        raise typer.Exit(2) from None
    _print_outcome(proto.name, outcome, root, sim)


def _print_outcome(name: str, outcome: RunOutcome, root: Path, sim: bool) -> None:
    table = Table(title=f"{name}: {outcome.state.value}", show_header=False)
    table.add_column("", no_wrap=True)
    table.add_column("", overflow="fold")
    from ..thermal import ThermalOutcome, summary_lines

    if not isinstance(outcome, ThermalOutcome):  # a furnace run has no cycles
        table.add_row("cycles", str(outcome.cycles))
    table.add_row("rows", f"{outcome.rows:,}")
    table.add_row("simulated time" if sim else "run time", _fmt_hours(outcome.run_time_s))
    if outcome.reason:
        table.add_row("reason", outcome.reason)
    if isinstance(outcome, ThermalOutcome) and outcome.summary:
        for key, value in summary_lines(outcome.summary):
            table.add_row(key, value)
    out.print(table)
    # on a line of its own and never cut: the path is what the user copies next
    out.print(f"run directory: {root}", markup=False, highlight=False, soft_wrap=True)
    if outcome.state != RunState.finished:
        raise typer.Exit(1)


def _run_with_display(
    req: Any, start: Callable[..., Awaitable[Any]], *, sim: bool, mqtt: str | None, quiet: bool
) -> Any:
    """Run ``start(sinks=..., on_progress=..., on_executor=...)`` with a progress display,
    on the virtual clock when ``sim``."""
    from ..clock import EventLoopChoiceError, new_virtual_loop, real_time_loop_factory

    try:  # the loop is chosen before anything is shown or started
        loop_factory = new_virtual_loop if sim else real_time_loop_factory()
    except EventLoopChoiceError as exc:
        err.print(f"error: {exc}; nothing was started", markup=False, highlight=False)
        raise typer.Exit(2) from None
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=16),
        TaskProgressColumn(),
        _SimTimeColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=quiet,
        refresh_per_second=8,
    )
    task_id = progress.add_task(req.protocol.name[:20], total=1000)
    t_wall0 = time.perf_counter()
    last = [0.0]

    def on_progress(ex: Any) -> None:
        now = time.perf_counter()
        if now - last[0] < 0.1 and ex.progress() < 1:
            return
        last[0] = now
        p = ex.progress()
        wall = now - t_wall0
        eta = None
        if 0 < p < 1:
            eta = (
                f"{wall * (1 - p) / p:,.0f} s"
                if sim
                else duration_text(ex.run_time() * (1 - p) / p)
            )
        progress.update(
            task_id,
            completed=1000 * p,
            cycle=ex.cycles.cycle,
            step=ex.current_step.label if ex.current_step else "",
            sim_s=ex.run_time(),
            eta=eta or "–",
        )

    stopper = Stopper(err)

    def announce(ex: RunLifecycle) -> None:
        stopper.executor = ex
        if not quiet:
            err.print(f"run directory: {ex.store.root}", markup=False, highlight=False,
                      soft_wrap=True)  # fmt: skip

    async def main() -> Any:
        with stopper.installed():
            return await _start_with(mqtt, req, start, on_progress, announce)

    from labrig.drivers.capabilities import InstrumentError

    try:
        with signals_handled(), progress, asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())
    except (asyncio.CancelledError, Interrupted) as exc:
        sig = stopper.signal or (exc.sig if isinstance(exc, Interrupted) else None)
        if sig is None:
            raise
        raise typer.Exit(stopper.report(sig)) from None
    except InstrumentError as exc:
        # the instruments are opened before the run directory is made: none is left
        err.print(f"error: instrument out of reach: {exc}; nothing was started, no run "
                  "directory was written", markup=False, highlight=False,
                  soft_wrap=True)  # fmt: skip
        raise typer.Exit(1) from None


async def _start_with(
    mqtt: str | None,
    req: Any,
    start: Callable[..., Awaitable[Any]],
    on_progress: Callable[[Any], None],
    announce: Callable[[RunLifecycle], None],
) -> Any:
    """``start`` with the sinks and hooks of the display (and MQTT when asked)."""
    if not mqtt:
        return await start(on_progress=on_progress, on_executor=announce)
    from ..mqtt import attach_executor, open_publisher_for_run

    async with open_publisher_for_run(mqtt, req) as pub:

        def on_executor(ex: RunLifecycle) -> Any:
            announce(ex)
            return attach_executor(pub, ex)

        return await start(sinks=[pub], on_progress=on_progress, on_executor=on_executor)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("resume")(resume)

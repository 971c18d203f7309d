"""``labrig serve`` and its clients: ``submit``, ``ls``, ``pause``, ``continue``, ``abort``,
``logs``.

``serve`` runs the scheduler as a long-lived service with a control socket in the runs
directory; the other commands talk to it there (``--runs DIR``, default ``runs`` or
``$LABRIG_RUNS``). ``logs`` reads a run's ``events.jsonl`` directly.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._paths import existing_dir_callback, writable_dir_or_exit

__all__ = ["register"]

err = Console(stderr=True)
out = Console()

RunsOpt = Annotated[
    Path,
    typer.Option(
        "--runs",
        envvar="LABRIG_RUNS",
        help="Runs directory (where the daemon's socket is).",
        callback=existing_dir_callback,
    ),
]
_FINAL = ("finished", "aborted", "failed")
LabOpt = Annotated[
    str | None,
    typer.Option(
        "--lab", envvar="LABRIG_LAB", help="Lab database URL: act on the whole lab (docs/lab.md)."
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _call(runs: Path, message: dict[str, Any]) -> dict[str, Any]:
    from ..daemon import DaemonError, DaemonUnavailable, request

    try:
        return request(runs, message)
    except DaemonUnavailable as exc:
        raise _fail(str(exc), 3) from None
    except DaemonError as exc:
        raise _fail(str(exc), 1) from None


def serve(
    station: Annotated[
        Path | None, typer.Option("--station", help="Station file (with --sim: optional).")
    ] = None,
    sim: Annotated[bool, typer.Option("--sim", help="Simulated instruments.")] = False,
    runs: RunsOpt = Path("runs"),
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="Publish to this broker.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    stop_grace: Annotated[
        float,
        typer.Option(
            "--stop-grace",
            min=0.0,
            help="After one SIGTERM, seconds to wait for block ends before leaving the "
            "running blocks to the instruments (resumed on the next start).",
        ),
    ] = 120.0,
    poll: Annotated[
        float | None,
        typer.Option(
            "--poll", min=0.001, help="Seconds between polls of each instrument (default: 10)."
        ),
    ] = None,
) -> None:
    """Run the scheduler as a service until SIGTERM / Ctrl-C (twice: stop at once)."""
    writable_dir_or_exit(runs, "--runs", err)
    import logging

    from ..daemon import Daemon, DaemonStartError
    from ..station import DEFAULT_STATION, StationError, load_station

    if station is None and not sim:
        raise _fail("give --station FILE, or --sim for the built-in simulated station")
    try:
        st = load_station(station) if station is not None else DEFAULT_STATION
    except StationError as exc:
        raise _fail(str(exc)) from None
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from ..executor import RunOptions

    daemon = Daemon(
        station=st, runs_dir=runs, sim=sim, mqtt_url=mqtt, stop_grace_s=stop_grace,
        run_options=RunOptions(poll_s=poll) if poll is not None else None,
    )  # fmt: skip
    from ..clock import EventLoopChoiceError, run_real_time

    try:
        run_real_time(daemon.run())
    except EventLoopChoiceError as exc:
        raise _fail(str(exc)) from None
    except DaemonStartError as exc:
        raise _fail(str(exc)) from None


def _parse_at(text: str) -> float:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"--at takes an ISO time like 2025-03-01T08:00 or 2025-03-01 08:00+01:00, got {text!r}"
        ) from None
    return dt.timestamp()  # a time without zone is local time


def submit(
    protocol: Annotated[str, typer.Argument(help="A protocol file or library name.")],
    cell: Annotated[str, typer.Option("--cell", help="The cell's id.")],
    position: Annotated[
        str | None, typer.Option("--position", help="Station position (default: shortest queue).")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Start no earlier than this ISO time.")
    ] = None,
    after: Annotated[
        str | None, typer.Option("--after", help="Start after this run has finished.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a cell field, key=value.")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of a simulated cell's noise.")] = 0,
    runs: RunsOpt = Path("runs"),
    lab: LabOpt = None,
) -> None:
    """Queue PROTOCOL on the daemon's station (or the lab's); prints the run id."""
    from labrig.protocols.errors import ProtocolError
    from labrig.protocols.loader import dump_protocol_yaml, load_protocol

    from .run_cli import _parse_sets

    if at is not None and after is not None:
        raise _fail("give --at or --after, not both")
    try:
        not_before = _parse_at(at) if at is not None else None
        overrides = _parse_sets(set_ or [])
        overrides["cell.cell_id"] = cell
        proto = load_protocol(protocol, overrides=overrides)
        from ..instruments.sim.presets import check_preset

        check_preset(proto.cell)  # a typo, on a simulated station or not
    except ProtocolError as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (ValueError, typer.BadParameter) as exc:
        raise _fail(str(exc)) from None
    if lab is not None:
        from ._lab_routes import lab_submit

        text = dump_protocol_yaml(proto)
        lab_submit(lab, proto, text, source=protocol, position=position, not_before=not_before,
                   after=after, seed=seed)  # fmt: skip
        return
    reply = _call(
        runs,
        {
            "op": "submit",
            "protocol_yaml": dump_protocol_yaml(proto),
            "source": protocol,
            "position": position,
            "at": not_before,
            "after": after,
            "seed": seed,
        },
    )
    out.print(reply["run_id"], markup=False, highlight=False)
    err.print(f"queued on {reply['position']} ({reply['state']})", highlight=False)


def _fmt_eta(seconds: float | None) -> str:
    from ._format import duration_text

    return duration_text(seconds)


def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    runs: RunsOpt = Path("runs"),
    lab: LabOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="With --lab: newest N runs.")] = 100_000,
) -> None:
    """List the daemon's runs (or the lab's, with their agents): state, cycle, step, ETA."""
    if lab is not None:
        from ._lab_routes import lab_ls

        lab_ls(lab, as_json, limit)
        return
    reply = _call(runs, {"op": "ls"})
    if as_json:
        out.print_json(json.dumps({k: v for k, v in reply.items() if k != "ok"}))
        return
    table = Table(title=f"labrig runs in {runs}")
    for col in ("run", "position", "protocol", "state", "cycle", "step", "ETA"):
        table.add_column(col, overflow="fold")
    for r in reply["runs"]:
        state = r["state"] + (f" ({r['reason']})" if r.get("reason") else "")
        table.add_row(
            r["run_id"],
            r["position"],
            r["protocol"][:40],
            state,
            "" if r["cycle"] is None else str(r["cycle"]),
            (r["step"] or "")[:40],
            _fmt_eta(r["eta_s"]) if r["state"] in ("running", "paused") else "",
        )
    out.print(table)
    for t in reply.get("timeline", []):
        parts = []
        for s in t["slots"]:
            what = "holding" if s["holding"] else "waiting"
            exp = "" if s["expected_s"] is None else f", ~{s['expected_s']:.0f} s"
            start = s["expected_start_s"]
            when = "" if s["holding"] or start is None else f", in ~{start:.0f} s"
            parts.append(f"{s['run_id']} {what}{exp}{when}")
        out.print(f"{t['resource']}: " + "; ".join(parts), highlight=False)
    if reply.get("watchdog_trips"):
        out.print(f"stale-data watchdog trips: {reply['watchdog_trips']}")


def _command(op: str) -> Any:
    def cmd(
        run: Annotated[str, typer.Argument(help="Run id (see `labrig ls`).")],
        runs: RunsOpt = Path("runs"),
        lab: LabOpt = None,
    ) -> None:
        if lab is not None:
            from ._lab_routes import lab_command

            lab_command(lab, run, op)
            return
        reply = _call(runs, {"op": op, "run": run})
        out.print(f"{run}: {reply['message']}", highlight=False)

    cmd.__doc__ = {
        "pause": "Pause a run at its next safe point (its cycler at rest).",
        "resume": "Continue a run paused with `labrig pause` (daemon runs).",
        "abort": "Abort a run (or take it off the queue); its instruments go to safe state.",
    }[op]
    return cmd


def format_event(e: dict[str, Any]) -> str:
    """One event as a line: wall time, run time, kind, data."""
    wall = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(e.get("wall_time", 0))))
    rt = float(e.get("run_time_s", 0.0))
    data = e.get("data") or {}
    fields = " ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in data.items()
        if v is not None
    )
    return f"{wall}  +{rt:>10.1f} s  #{e.get('seq', '?'):<5} {e.get('kind', '?'):<18} {fields}"


def logs(
    run: Annotated[str, typer.Argument(help="Run id (a directory in the runs directory).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = (
        False
    ),
    runs: RunsOpt = Path("runs"),
) -> None:
    """Print a run's events (events.jsonl, then what the daemon holds that is newer)."""
    if not run or "/" in run or run in (".", "..") or os.sep in run:
        raise _fail(f"{run!r} is not a run id")
    path = runs / run / "events.jsonl"
    if not path.exists():
        raise _fail(f"no run {run!r} in {runs} (no {path})")
    last = 0
    ended = False

    def show(e: dict[str, Any]) -> None:
        nonlocal last, ended
        seq = e.get("seq")
        if isinstance(seq, int):
            if seq <= last:
                return  # already printed (the file and the daemon overlap)
            last = seq
        out.print(format_event(e), markup=False, highlight=False)
        ended = ended or e.get("kind") == "run_ended"

    try:
        while True:
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # a line being written
                show(e)
            for e in _daemon_events(runs, run, last):
                show(e)
            if not follow or (ended and _final(runs / run)):
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


def _daemon_events(runs: Path, run: str, after: int) -> list[dict[str, Any]]:
    """Events the daemon holds for ``run`` after ``after`` (none without a daemon)."""
    from ..daemon import DaemonError, DaemonUnavailable, request

    try:
        reply = request(runs, {"op": "events", "run": run, "after_seq": after}, timeout_s=5)
    except (DaemonUnavailable, DaemonError):
        return []
    events = reply.get("events")
    return events if isinstance(events, list) else []


def _final(root: Path) -> bool:
    try:
        return json.loads((root / "run.json").read_text()).get("state") in _FINAL
    except (OSError, ValueError):
        return False


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("submit")(submit)
    app.command("ls")(ls)
    # `labrig resume RUN_DIR` is journal-based resume (run_cli); continuing a run the
    # daemon paused is `labrig continue RUN`
    app.command("pause")(_command("pause"))
    app.command("continue")(_command("resume"))
    app.command("abort")(_command("abort"))
    app.command("logs")(logs)

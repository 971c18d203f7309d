"""``labrig agent`` and ``labrig lab ...``: a lab across many PCs (see docs/lab.md).

```
labrig lab init --lab postgresql://admin@db.lab/lab       # tables, roles, functions
labrig lab add-user ana --role operator --lab ...         # a login role of the lab
labrig lab init-certs --dir certs --agent pc-a=pc-a.lab,10.0.0.11 --agent eis-pc=...
labrig lab token web --role viewer --certs certs          # an API token
labrig agent --station pc-a.yaml --lab postgresql://pc-a@db.lab/lab --certs certs
labrig lab agents --lab ...                               # who is online
```
The database driver, the web server and the crypto library are imported here, inside
the commands, never by ``labrig run`` or ``labrig serve``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._paths import writable_dir_or_exit

__all__ = ["register"]

err = Console(stderr=True)
out = Console()

LabOpt = Annotated[
    str, typer.Option("--lab", envvar="LABRIG_LAB", help="Lab database URL (postgresql://...).")
]
CertsOpt = Annotated[
    Path | None,
    typer.Option("--certs", envvar="LABRIG_CERTS", help="Directory with ca.crt, <agent>.crt/.key."),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def lab_secret(certs: Path | None) -> str | None:
    """The lab secret from $LABRIG_LAB_SECRET or ``<certs>/lab.secret`` (mode 0600)."""
    import os

    from ..lab.security import read_secret

    if os.environ.get("LABRIG_LAB_SECRET"):
        return read_secret(env="LABRIG_LAB_SECRET", what="lab secret")
    if certs is not None and (certs / "lab.secret").exists():
        return read_secret(path=certs / "lab.secret", what="lab secret")
    return None


def agent(
    station: Annotated[Path, typer.Option("--station", help="This PC's station file.")],
    lab: LabOpt,
    runs: Annotated[Path, typer.Option("--runs", envvar="LABRIG_RUNS", help="Runs directory.")] = (
        Path("runs")
    ),
    certs: CertsOpt = None,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="Publish to this broker.")] = None,
    sim: Annotated[bool, typer.Option("--sim", help="Simulated instruments (dry run).")] = False,
    sim_log: Annotated[
        Path | None,
        typer.Option("--sim-log", help="--sim: shared instruments log commands to DIR/NAME.jsonl"),
    ] = None,
    poll: Annotated[
        float | None, typer.Option("--poll", help="Instrument poll period, s (default 10).")
    ] = None,
    stop_grace: Annotated[float, typer.Option("--stop-grace", min=0.0)] = 120.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run this PC's instruments as one agent of the lab until SIGTERM / Ctrl-C."""
    writable_dir_or_exit(runs, "--runs", err)
    import logging

    from ..executor import RunOptions
    from ..lab.agent import LabAgent
    from ..lab.config import load_agent_config
    from ..lab.db import LabUnavailable
    from ..lab.security import SecretError
    from ..station import StationError

    try:
        cfg = load_agent_config(station)
        secret = lab_secret(certs)
    except (StationError, SecretError) as exc:
        raise _fail(str(exc)) from None
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = RunOptions(poll_s=poll, collect_s=poll) if poll is not None else None
    a = LabAgent(cfg, lab_url=lab, runs_dir=runs, sim=sim, mqtt_url=mqtt, certs=certs,
                 secret=secret, run_options=options, stop_grace_s=stop_grace,
                 sim_log=sim_log)  # fmt: skip
    from ..clock import EventLoopChoiceError, run_real_time

    try:
        run_real_time(a.run())
    except EventLoopChoiceError as exc:
        raise _fail(str(exc)) from None
    except LabUnavailable as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"agent {cfg.name}: {exc}") from None


def _sync(lab: str) -> Any:
    from ..lab.db import LabUnavailable, connect

    try:
        return connect(lab, app="labrig lab")
    except LabUnavailable as exc:
        raise _fail(str(exc), 3) from None


def init(lab: LabOpt) -> None:
    """Create or upgrade the lab database's tables, roles and functions."""
    from ..lab.schema import SCHEMA_VERSION, migrate, role_names

    conn = _sync(lab)
    try:
        applied = migrate(conn)
        name = conn.info.dbname
    except Exception as exc:
        raise _fail(f"migration failed: {str(exc).splitlines()[0]}") from None
    finally:
        conn.close()
    roles = role_names(name)
    what = f"applied {applied}" if applied else "already up to date"
    out.print(f"lab database {name}: schema version {SCHEMA_VERSION} ({what})")
    out.print("roles: " + ", ".join(f"{k}={v}" for k, v in roles.items()))


def add_user(
    name: Annotated[str, typer.Argument(help="Login role to create or update.")],
    lab: LabOpt,
    role: Annotated[str, typer.Option("--role", help="viewer, operator or agent.")] = "viewer",
) -> None:
    """Make NAME a login role of the lab with ROLE (password: set it with psql \\password)."""
    from psycopg import sql

    from ..lab.schema import role_names

    conn = _sync(lab)
    try:
        roles = role_names(conn.info.dbname)
        if role not in roles:
            raise _fail(f"--role: one of {', '.join(roles)}")
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            for other in roles.values():
                cur.execute(sql.SQL("REVOKE {} FROM {}").format(
                    sql.Identifier(other), sql.Identifier(name)))  # fmt: skip
            cur.execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(roles[role]), sql.Identifier(name)))  # fmt: skip
    finally:
        conn.close()
    out.print(f"{name}: {role} ({roles[role]})")


def init_certs(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the files.")],
    agents: Annotated[
        list[str], typer.Option("--agent", help="NAME=host1,host2 (names and addresses).")
    ],
    lab_name: Annotated[str, typer.Option("--name", help="The lab's name (in the CA).")] = "lab",
) -> None:
    """A lab CA, a certificate per agent, and the lab secret (keys and secret 0600)."""
    from ..lab.security import SecretError, issue_agent_cert, make_ca, new_lab_secret, write_secret

    try:
        if not (directory / "ca.crt").exists():
            make_ca(directory, lab_name)
        if not (directory / "lab.secret").exists():
            write_secret(directory / "lab.secret", new_lab_secret() + "\n")
        for spec in agents:
            name, _, hosts = spec.partition("=")
            hs = [h for h in hosts.split(",") if h] or ["localhost", "127.0.0.1"]
            issue_agent_cert(directory, name, hs)
            out.print(f"{name}: {directory / (name + '.crt')} ({', '.join(hs)})")
    except SecretError as exc:
        raise _fail(str(exc)) from None
    out.print(f"CA {directory / 'ca.crt'}; keep ca.key and lab.secret private")


def token(
    name: Annotated[str, typer.Argument(help="Who the token is for.")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator or agent.")] = "viewer",
    certs: CertsOpt = None,
) -> None:
    """Print an API token for NAME with ROLE (made from the lab secret)."""
    from ..lab.security import SecretError, mint_token

    try:
        secret = lab_secret(certs)
        if secret is None:
            raise _fail("no lab secret: give --certs DIR (with lab.secret) or $LABRIG_LAB_SECRET")
        out.print(mint_token(secret, name, role), markup=False, highlight=False)
    except SecretError as exc:
        raise _fail(str(exc)) from None


def agents_cmd(lab: LabOpt) -> None:
    """The lab's agents: online or offline, heartbeat age, positions, active runs."""
    from ..lab.queries import list_agents

    conn = _sync(lab)
    try:
        rows = list_agents(conn)
    finally:
        conn.close()
    table = Table(title="labrig agents")
    for col in ("agent", "status", "heartbeat", "host", "API", "positions", "active runs"):
        table.add_column(col)
    for a in rows:
        age = a["heartbeat_age_s"]
        table.add_row(a["name"], a["status"], "–" if age is None else f"{age:.0f} s ago",
                      a["host"] or "", a["api_url"] or "", str(a["positions"]),
                      str(a["active_runs"]))  # fmt: skip
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
    lab = typer.Typer(help="A lab across many PCs: database, users, certificates.",
                      no_args_is_help=True)  # fmt: skip
    lab.command("init")(init)
    lab.command("add-user")(add_user)
    lab.command("init-certs")(init_certs)
    lab.command("token")(token)
    lab.command("agents")(agents_cmd)
    app.add_typer(lab, name="lab")

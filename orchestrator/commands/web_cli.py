"""``labrig web`` (the lab in a browser) and ``labrig web-user`` (its users file)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ._paths import existing_dir_callback
from .mqtt_cli import MqttCaOption, MqttUrlOption

__all__ = ["register"]

err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PrefixOpt = Annotated[
    str, typer.Option("--prefix", help="Stations to show: an MQTT prefix, '+' for any level.")
]
LabOpt = Annotated[
    str | None,
    typer.Option(
        "--lab",
        envvar="LABRIG_LAB",
        help="Lab database URL (postgresql://web@db/lab): show the whole lab (docs/lab.md).",
    ),
]
RunsOpt = Annotated[
    Path,
    typer.Option(
        "--runs", envvar="LABRIG_RUNS", help="Runs directory.", callback=existing_dir_callback
    ),
]
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")]
HostOpt = Annotated[
    str, typer.Option("--host", help="Address to listen on (default: this computer only).")
]
UsersOpt = Annotated[
    Path | None,
    typer.Option(
        "--users",
        envvar="LABRIG_WEB_USERS_FILE",
        help="Users file (mode 0600; see `labrig web-user`). Default: $LABRIG_WEB_USERS.",
    ),
]
NoMqttOpt = Annotated[
    bool, typer.Option("--no-mqtt", help="Do not connect to a broker (even if set in env).")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Where run overviews are kept (default: ~/.cache/labrig/web)."),
]
SecureOpt = Annotated[
    bool,
    typer.Option("--secure-cookies", help="Session cookie only over HTTPS (behind a TLS proxy)."),
]
AuditOpt = Annotated[
    Path | None,
    typer.Option("--audit", help="Audit log (JSON lines). Default: <runs>/web-audit.jsonl."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def web(
    mqtt: MqttUrlOption = None,
    mqtt_ca: MqttCaOption = None,
    prefix: PrefixOpt = "labrig/+",
    lab: LabOpt = None,
    runs: RunsOpt = Path("runs"),
    port: PortOpt = 8470,
    host: HostOpt = "127.0.0.1",
    users: UsersOpt = None,
    no_mqtt: NoMqttOpt = False,
    cache: CacheOpt = None,
    secure_cookies: SecureOpt = False,
    audit: AuditOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the lab in a browser: live channels, runs with plots and reports, the queue."""
    import logging

    import uvicorn

    from ..web import WebConfig, create_app
    from ..web.series import default_cache_dir

    store = _users(users, host, lab)
    settings = None if no_mqtt else _mqtt(mqtt, mqtt_ca, prefix)
    if lab is not None:
        _check_lab(lab)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = WebConfig(
        runs_dir=runs,
        mqtt=settings,
        prefix=prefix,
        users=store,
        secret_key=os.environ.get("LABRIG_WEB_SECRET") or WebConfig().secret_key,
        secure_cookies=secure_cookies,
        audit_path=audit or runs / "web-audit.jsonl",
        lab=lab,
        cache_dir=cache if cache is not None else default_cache_dir(),
    )
    where = "sign-in required" if store is not None else "no users configured: read-only"
    what = f"lab {_redact(lab)}" if lab else f"runs in {runs}"
    broker = settings.url if settings is not None else "no MQTT broker"
    err.print(f"labrig web on http://{host}:{port}/ ({where}; {what}; {broker})", highlight=False)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="debug" if verbose else "warning",
        timeout_graceful_shutdown=2,
        proxy_headers=False,
    )


def _redact(url: str | None) -> str:
    from ..lab.db import redact

    return redact(url or "")


def _check_lab(url: str) -> None:
    """The lab database answers and has labrig's tables (else a clear stop)."""
    from ..lab.db import LabUnavailable, connect, redact

    try:
        with connect(url, app="labrig web") as conn:
            conn.execute("SELECT 1 FROM schema_version LIMIT 1")
    except LabUnavailable as exc:
        raise _fail(str(exc), 3) from None
    except Exception as exc:  # psycopg's own errors: no table, no permission
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(
            f"lab database {redact(url)}: {first} (run `labrig lab init --lab URL` once, "
            "and give the web app a login of the lab: `labrig lab add-user web --role operator`)"
        ) from None


def _users(users: Path | None, host: str, lab: str | None) -> Any:
    """The users (None: no sign-in), after the checks that stop a bad start."""
    from ..web import AuthConfigError, UserStore

    try:
        store = UserStore.from_file(users) if users is not None else UserStore.from_env()
    except AuthConfigError as exc:
        raise _fail(str(exc)) from None
    if store is None and not _loopback(host):
        raise _fail(
            f"--host {host} would open the lab to the network without sign-in: configure users "
            "(--users FILE or LABRIG_WEB_USERS, see `labrig web-user`) first"
        )
    return store


def _mqtt(url: str | None, ca: str | None, prefix: str) -> Any:
    """The broker's settings; None when neither ``--mqtt`` nor ``LABRIG_MQTT_URL`` names
    one (the lab page then comes from the daemon and the run directories)."""
    from ..mqtt.monitor import check_filter_prefix
    from ..mqtt.settings import MqttConfigError, MqttSettings

    try:
        check_filter_prefix(prefix)
        if url is None and not os.environ.get("LABRIG_MQTT_URL"):
            return None
        return MqttSettings.from_env(url=url, ca_file=ca, station="web")
    except MqttConfigError as exc:
        raise _fail(str(exc)) from None


def web_user(
    file: Annotated[Path, typer.Argument(help="Users file (created with mode 0600).")],
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option("--role", help="operator or viewer.")] = "viewer",
    delete: Annotated[bool, typer.Option("--delete", help="Remove the user.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add, change or remove a user of `labrig web` (asks for the password)."""
    import sys

    from ..web import AuthConfigError, set_user

    password: str | None = None
    if not delete:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        set_user(file, name, role, password)
    except AuthConfigError as exc:
        raise _fail(str(exc)) from None
    err.print(f"{'removed' if delete else 'saved'} {name} in {file}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("web")(web)
    app.command("web-user")(web_user)

"""``labrig web`` (the lab in a browser) and ``labrig web-user`` (its users file)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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


def web(
    mqtt: MqttUrlOption = None,
    mqtt_ca: MqttCaOption = None,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Stations to show: an MQTT prefix, '+' for any level.")
    ] = "labrig/+",
    lab: Annotated[
        str | None, typer.Option("--lab", help="The lab database (not available yet).")
    ] = None,
    runs: Annotated[
        Path, typer.Option("--runs", envvar="LABRIG_RUNS", help="Runs directory.")
    ] = Path("runs"),
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8470,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (default: this computer only).")
    ] = "127.0.0.1",
    users: Annotated[
        Path | None,
        typer.Option(
            "--users",
            envvar="LABRIG_WEB_USERS_FILE",
            help="Users file (mode 0600; see `labrig web-user`). Default: $LABRIG_WEB_USERS.",
        ),
    ] = None,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="Do not connect to a broker.")] = False,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies", help="Session cookie only over HTTPS (behind a TLS proxy)."
        ),
    ] = False,
    audit: Annotated[
        Path | None,
        typer.Option("--audit", help="Audit log (JSON lines). Default: <runs>/web-audit.jsonl."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Serve the lab in a browser: live channels, runs with plots and reports, the queue."""
    import logging

    import uvicorn

    from ..web import WebConfig, create_app

    store = _users(users, host, lab)
    settings = None if no_mqtt else _mqtt(mqtt, mqtt_ca, prefix)
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
    )
    where = "sign-in required" if store is not None else "no users configured: read-only"
    err.print(f"labrig web on http://{host}:{port}/ ({where}; runs in {runs})", highlight=False)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="debug" if verbose else "warning",
        timeout_graceful_shutdown=2,
        proxy_headers=False,
    )


def _users(users: Path | None, host: str, lab: str | None) -> Any:
    """The users (None: no sign-in), after the checks that stop a bad start."""
    from ..web import AuthConfigError, SourceUnavailable, UserStore
    from ..web.source import lab_source

    if lab is not None:
        try:
            lab_source(lab)
        except SourceUnavailable as exc:
            raise _fail(str(exc)) from None
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
    from ..mqtt.monitor import check_filter_prefix
    from ..mqtt.settings import MqttConfigError, MqttSettings

    try:
        check_filter_prefix(prefix)
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

"""``labrig monitor``, and the ``--mqtt`` option other commands share.

Other commands take the broker the same way::

    from labrig.orchestrator.commands.mqtt_cli import MqttUrlOption, MqttCaOption, mqtt_settings

    def run(..., mqtt: MqttUrlOption = None, mqtt_ca: MqttCaOption = None):
        settings = mqtt_settings(mqtt, station=station.name, ca_file=mqtt_ca)
        # None: publish nothing (no --mqtt and no LABRIG_MQTT_URL)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Annotated, Any

import aiomqtt
import typer
from rich.console import Console, JustifyMethod
from rich.live import Live
from rich.table import Table

from ..mqtt.monitor import MonitorModel, check_filter_prefix, watch
from ..mqtt.settings import MqttConfigError, MqttSettings

__all__ = [
    "MqttCaOption",
    "MqttPrefixOption",
    "MqttUrlOption",
    "mqtt_settings",
    "register",
    "render_table",
]

MqttUrlOption = Annotated[
    str | None,
    typer.Option(
        "--mqtt",
        help="MQTT broker URL, e.g. mqtt://user:pass@host:1883 or mqtts://host:8883 "
        "(default $LABRIG_MQTT_URL; credentials also from $LABRIG_MQTT_USERNAME/PASSWORD).",
        show_default=False,
    ),
]
MqttPrefixOption = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        help="Topic prefix (default $LABRIG_MQTT_PREFIX, else labrig/<station>).",
        show_default=False,
    ),
]
MqttCaOption = Annotated[
    str | None,
    typer.Option(
        "--mqtt-ca",
        help="CA certificate file for mqtts:// (default $LABRIG_MQTT_CA).",
        show_default=False,
    ),
]


def mqtt_settings(
    url: str | None,
    *,
    station: str,
    prefix: str | None = None,
    ca_file: str | None = None,
    require: bool = False,
    **options: Any,
) -> MqttSettings | None:
    """Settings for ``--mqtt``: None when neither the option nor ``LABRIG_MQTT_URL`` is set.

    Bad values raise :class:`typer.BadParameter` naming the problem.
    """
    import os

    if url is None and not os.environ.get("LABRIG_MQTT_URL") and not require:
        return None
    try:
        return MqttSettings.from_env(
            url=url, station=station, prefix=prefix, ca_file=ca_file, **options
        )
    except MqttConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mqtt") from None


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _eta(seconds: float | None) -> str:
    from ._format import duration_text

    return duration_text(seconds, missing="")


def render_table(rows: list[dict[str, Any]], title: str) -> Table:
    """The monitor table for rows of :meth:`MonitorModel.rows`."""
    table = Table(title=title, expand=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("station", "left"),
        ("channel", "left"),
        ("state", "left"),
        ("step", "left"),
        ("cycle", "right"),
        ("V", "right"),
        ("A", "right"),
        ("°C", "right"),
        ("ETA", "right"),
        ("updated", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for r in rows:
        state = r["state"] or "?"
        style = ""
        if r["offline"]:
            state, style = f"OFFLINE ({state})", "bold red"
        elif r["stale"]:
            state, style = f"STALE ({state})", "yellow"
        elif state in ("failed", "aborted"):
            style = "red"
        elif state == "paused":
            style = "cyan"
        table.add_row(
            r["station"],
            r["channel"],
            state,
            r["step"] or "",
            "" if r["cycle"] is None else str(r["cycle"]),
            _fmt(r["voltage_V"], ".4f"),
            _fmt(r["current_A"], ".4f"),
            _fmt(r["temperature_C"], ".1f"),
            _eta(r["eta_s"]),
            _age(r["age_s"]),
            style=style,
        )
    return table


async def _once(settings: MqttSettings, prefix: str, model: MonitorModel, wait: float) -> None:
    await watch(settings, prefix, model, lambda _keys: None, quiet_s=min(0.5, wait), max_s=wait)


async def _stream_json(settings: MqttSettings, prefix: str, model: MonitorModel) -> None:
    def emit(keys: list[tuple[str, str]]) -> None:
        now = time.time()
        for key in keys:
            sys.stdout.write(json.dumps(model.row(key, now), separators=(",", ":")) + "\n")
        sys.stdout.flush()

    await watch(settings, prefix, model, emit)


async def _live(settings: MqttSettings, prefix: str, model: MonitorModel) -> None:
    console = Console()
    status = {"text": f"{settings.url}  {prefix}"}

    def title() -> str:
        return f"labrig monitor - {status['text']}"

    with Live(render_table([], title()), console=console, auto_refresh=False) as live:

        def redraw(_keys: list[tuple[str, str]] | None = None) -> None:
            live.update(render_table(model.rows(time.time()), title()), refresh=True)

        async def refresher() -> None:
            while True:  # ages and staleness change with time alone
                redraw()
                await asyncio.sleep(1.0)

        async def follow() -> None:
            delay = 0.5
            while True:
                try:
                    status["text"] = f"{settings.url}  {prefix}"
                    await watch(settings, prefix, model, redraw)
                except aiomqtt.MqttError as exc:
                    status["text"] = f"{settings.url} unreachable ({exc}); retrying"
                    redraw()
                    await asyncio.sleep(delay)
                    delay = min(5.0, delay * 2)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(refresher())
            tg.create_task(follow())


def register(app: typer.Typer) -> None:
    @app.command("monitor")
    def monitor(
        mqtt: MqttUrlOption = None,
        prefix: Annotated[
            str | None,
            typer.Option(
                "--prefix",
                help="Topic prefix to watch; '+' matches one level "
                "(default $LABRIG_MQTT_PREFIX, else labrig/+ : every station).",
                show_default=False,
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON object per line per change.")
        ] = False,
        once: Annotated[
            bool, typer.Option("--once", help="Print the current state once and exit.")
        ] = False,
        stale: Annotated[
            float, typer.Option("--stale", help="Seconds without update that mark a run stale.")
        ] = 30.0,
        wait: Annotated[
            float, typer.Option("--wait", help="With --once: seconds to collect state at most.")
        ] = 3.0,
        mqtt_ca: MqttCaOption = None,
    ) -> None:
        """Live table of every channel's run (state, step, cycle, V, A, °C, ETA, age)."""
        import os

        settings = mqtt_settings(mqtt, station="monitor", ca_file=mqtt_ca, require=True)
        assert settings is not None
        watch_prefix = prefix or os.environ.get("LABRIG_MQTT_PREFIX") or "labrig/+"
        try:
            check_filter_prefix(watch_prefix)
        except MqttConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--prefix") from None
        model = MonitorModel(stale_after_s=stale)
        try:
            if once:
                asyncio.run(_once(settings, watch_prefix, model, wait))
                rows = model.rows(time.time())
                if as_json:
                    for row in rows:
                        typer.echo(json.dumps(row, separators=(",", ":")))
                else:
                    Console().print(render_table(rows, f"labrig monitor - {settings.url}"))
            elif as_json:
                asyncio.run(_stream_json(settings, watch_prefix, model))
            else:
                with contextlib.suppress(KeyboardInterrupt):
                    asyncio.run(_live(settings, watch_prefix, model))
        except aiomqtt.MqttError as exc:
            typer.echo(f"error: cannot monitor {settings.url}: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(0) from None

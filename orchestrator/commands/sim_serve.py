"""``labrig sim serve <driver>``: run simulated instruments until Ctrl-C.

The first line printed is the address to connect to (a transport URL), so scripts can
read it; with ``--count N``, the first N lines are the N instruments' addresses;
everything else goes after them. What each driver name starts is its entry's ``serve``
in the instrument registry (:mod:`orchestrator.instruments.table`); ``--channels`` and
``--command-log`` where the entry's ``serve_features`` offer them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..instruments import ServeOptions

__all__ = ["register"]


def _servable() -> dict[str, str]:
    from ..instruments import ENTRIES

    return {e.driver: e.summary for e in ENTRIES if e.serve is not None}


def _log_path(path: Path | None, k: int, count: int) -> str | None:
    """The command log of instrument ``k`` of ``count`` (``m.jsonl`` -> ``m-1.jsonl``)."""
    if path is None:
        return None
    return str(path if count == 1 else path.with_name(f"{path.stem}-{k}{path.suffix}"))


async def _serve(
    name: str,
    opts: ServeOptions,
    count: int,
    command_log: Path | None,
) -> None:
    from ..instruments import REGISTRY

    found = REGISTRY.get(name)
    if found is None or found.serve is None:
        raise typer.BadParameter(
            f"unknown simulator {name!r}; choose one of: {', '.join(sorted(_servable()))}"
        )
    asked = {"channels": opts.channels is not None, "command_log": command_log is not None}
    for feature in (f for f, on in asked.items() if on and f not in found.serve_features):
        flag = "--" + feature.replace("_", "-")
        raise typer.BadParameter(f"{name}: the simulator does not offer {flag}")
    if count > 1 and opts.port not in (None, 0):
        raise typer.BadParameter("--count with --port: give --port 0 (each a free port)")
    async with contextlib.AsyncExitStack() as stack:
        addresses = []
        for k in range(count):
            each = replace(opts, port=0 if count > 1 else opts.port,
                           command_log=_log_path(command_log, k, count))  # fmt: skip
            try:
                addresses.append(await stack.enter_async_context(found.serve(each)))
            except (ValueError, OSError) as exc:
                raise typer.BadParameter(f"{name}: {exc}") from None
        print("\n".join(addresses), flush=True)
        typer.echo(f"serving {count} simulated {name} at speed x{opts.speed:g}; Ctrl-C to stop",
                   err=True)  # fmt: skip
        stop = asyncio.Event()  # until Ctrl-C cancels us or SIGTERM: the stack closes them
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


def register(app: typer.Typer) -> None:
    sim = typer.Typer(help="Simulated instruments.", no_args_is_help=True)

    @sim.command("serve")
    def serve(
        instrument: str = typer.Argument(
            ..., help="a driver name: maccor, palmsens, keithley2450, eurotherm, alicat, espec"
        ),
        port: int | None = typer.Option(
            None, "--port", min=0, max=65535, help="TCP port (0: any free one)"
        ),
        pty: bool = typer.Option(False, "--pty", help="serve on a pseudo-terminal"),
        speed: float = typer.Option(1.0, "--speed", help="simulated seconds per real second"),
        channels: int | None = typer.Option(
            None, "--channels", min=1, help="channels of the instrument (maccor)"
        ),
        count: int = typer.Option(
            1, "--count", min=1, max=64, help="serve this many instruments (addresses first)"
        ),
        command_log: Path | None = typer.Option(  # noqa: B008
            None,
            "--command-log",
            help="log every command with time and sender as JSON lines (maccor; with "
            "--count, FILE-0.jsonl, FILE-1.jsonl ...)",
        ),
    ) -> None:
        """Serve simulated instruments; prints their addresses first, runs until Ctrl-C."""
        from ..instruments import ServeOptions

        if speed <= 0:
            raise typer.BadParameter("--speed must be > 0")
        if pty and port is not None:
            raise typer.BadParameter("give --port or --pty, not both")
        opts = ServeOptions(port=port, pty=pty, speed=speed, channels=channels)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(instrument, opts, count, command_log))

    @sim.command("list")
    def list_() -> None:
        """The simulators ``labrig sim serve`` can start."""
        for name, summary in sorted(_servable().items()):
            typer.echo(f"{name:14} {summary}")

    app.add_typer(sim, name="sim")

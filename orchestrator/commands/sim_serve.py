"""``labrig sim serve <driver>``: run one simulated instrument until Ctrl-C.

The first line printed is the address to connect to (a transport URL), so scripts can
read it; everything else goes after it. What each driver name starts is its entry's
``serve`` in the instrument registry (:mod:`orchestrator.instruments.table`).
"""

from __future__ import annotations

import asyncio
import contextlib

import typer

__all__ = ["register"]


def _servable() -> dict[str, str]:
    from ..instruments import ENTRIES

    return {e.driver: e.summary for e in ENTRIES if e.serve is not None}


async def _serve(name: str, port: int | None, pty: bool, speed: float) -> None:
    from ..instruments import REGISTRY, ServeOptions

    found = REGISTRY.get(name)
    if found is None or found.serve is None:
        raise typer.BadParameter(
            f"unknown simulator {name!r}; choose one of: {', '.join(sorted(_servable()))}"
        )
    opts = ServeOptions(port=port, pty=pty, speed=speed)
    async with contextlib.AsyncExitStack() as stack:
        try:
            address = await stack.enter_async_context(found.serve(opts))
        except (ValueError, OSError) as exc:
            raise typer.BadParameter(f"{name}: {exc}") from None
        print(address, flush=True)
        typer.echo(f"serving simulated {name} at speed x{speed:g}; Ctrl-C to stop", err=True)
        await asyncio.Event().wait()  # until Ctrl-C cancels us; the stack closes the server


def register(app: typer.Typer) -> None:
    sim = typer.Typer(help="Simulated instruments.", no_args_is_help=True)

    @sim.command("serve")
    def serve(
        instrument: str = typer.Argument(
            ..., help="a driver name: maccor, palmsens, keithley2450, eurotherm, alicat, espec"
        ),
        port: int | None = typer.Option(None, "--port", help="TCP port (0: any free one)"),
        pty: bool = typer.Option(False, "--pty", help="serve on a pseudo-terminal"),
        speed: float = typer.Option(1.0, "--speed", help="simulated seconds per real second"),
    ) -> None:
        """Serve one simulated instrument; prints its address first, runs until Ctrl-C."""
        if speed <= 0:
            raise typer.BadParameter("--speed must be > 0")
        if pty and port is not None:
            raise typer.BadParameter("give --port or --pty, not both")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(instrument, port, pty, speed))

    @sim.command("list")
    def list_() -> None:
        """The simulators ``labrig sim serve`` can start."""
        for name, summary in sorted(_servable().items()):
            typer.echo(f"{name:14} {summary}")

    app.add_typer(sim, name="sim")

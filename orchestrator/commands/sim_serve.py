"""``labrig sim serve <instrument>``: run one simulated instrument until Ctrl-C.

The first line printed is the address to connect to (a transport URL), so scripts can
read it; everything else goes after it. Instruments come from
:data:`simulators.registry.SIMULATORS`; new ones register there, not here.
"""

from __future__ import annotations

import asyncio
import contextlib

import typer

__all__ = ["register"]


async def _serve(name: str, port: int | None, pty: bool, speed: float) -> None:
    from labrig.simulators.registry import ServeOptions, load_all

    table = load_all()
    factory = table.get(name)
    if factory is None:
        raise typer.BadParameter(
            f"unknown simulator {name!r}; choose one of: {', '.join(sorted(table))}"
        )
    opts = ServeOptions(port=port, pty=pty, speed=speed)
    async with contextlib.AsyncExitStack() as stack:
        try:
            address = await factory(opts, stack)
        except (ValueError, OSError) as exc:
            raise typer.BadParameter(f"{name}: {exc}") from None
        print(address, flush=True)
        typer.echo(f"serving simulated {name} at speed x{speed:g}; Ctrl-C to stop", err=True)
        await asyncio.Event().wait()  # until Ctrl-C cancels us; the stack closes the server


def register(app: typer.Typer) -> None:
    sim = typer.Typer(help="Simulated instruments.", no_args_is_help=True)

    @sim.command("serve")
    def serve(
        instrument: str = typer.Argument(..., help="maccor, palmsens, k2450, ..."),
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

    app.add_typer(sim, name="sim")

"""The agent's HTTP API (FastAPI, served by uvicorn on the agent's event loop).

This module imports FastAPI at its top: it is imported only by an agent that serves
shared instruments (FastAPI resolves the handlers' annotations from module globals).

Every request needs ``Authorization: Bearer <token>`` (:mod:`.security`); over TLS with
the lab's certificates, and by default a client certificate of the lab CA as well.
``GET /v1/health`` and ``GET /v1/instruments`` need a viewer; ``POST
/v1/instruments/{instrument}/{channel}/{method}`` needs an agent and the fencing token of
the live lease of that channel. The OpenAPI description is at ``/openapi.json``.

| status | meaning |
|---|---|
| 200 | ``{"result": ...}`` |
| 400 | bad method or arguments |
| 401 / 403 | no valid token / the role may not do this |
| 404 | no such shared instrument channel |
| 409 | the fencing token is not the live lease (or the lease was lost during the call) |
| 502 | the instrument's own error: ``{"detail": {"error": "InstrumentTimeout", "message": ...}}`` |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request

from labrig.drivers.capabilities import InstrumentError

from .booking import LeaseLost, StaleToken
from .security import Principal, role_allows, verify_token
from .service import SharedInstruments
from .wire import WireFormatError

__all__ = ["TlsFiles", "client_ssl_context", "make_app", "serve_api"]

log = logging.getLogger("labrig.lab.api")


class TlsFiles:
    """Where an agent's certificate, key and the lab CA are: ``<dir>/<agent>.crt`` ..."""

    def __init__(self, directory: Path, agent: str) -> None:
        self.ca = directory / "ca.crt"
        self.cert = directory / f"{agent}.crt"
        self.key = directory / f"{agent}.key"


def client_ssl_context(tls: TlsFiles | None) -> ssl.SSLContext | bool:
    """Verify servers against the lab CA and present our own certificate."""
    if tls is None:
        return True
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


def make_app(service: SharedInstruments, secret: str, *, agent: str) -> FastAPI:
    """The FastAPI application serving ``service``."""
    app = FastAPI(
        title=f"labrig agent {agent}",
        version="1",
        description="Shared instruments of one labrig agent. See docs/lab.md.",
    )

    def principal(request: Request) -> Principal:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        who = verify_token(secret, token)
        if who is None:
            log.warning("refused an unauthenticated request to %s", request.url.path)
            raise HTTPException(401, "a valid bearer token is required")
        return who

    def viewer(who: Principal = Depends(principal)) -> Principal:  # noqa: B008
        return who

    @app.get("/v1/health")
    async def health(who: Principal = Depends(viewer)) -> dict[str, Any]:  # noqa: B008
        return {"agent": agent, "you": who.name, "role": who.role}

    @app.get("/v1/instruments")
    async def instruments(who: Principal = Depends(viewer)) -> list[dict[str, Any]]:  # noqa: B008
        return service.describe()

    @app.post("/v1/instruments/{instrument}/{channel}/{method}")
    async def call(
        instrument: str,
        channel: int,
        method: str,
        body: dict[str, Any] = Body(...),  # noqa: B008
        who: Principal = Depends(principal),  # noqa: B008
    ) -> dict[str, Any]:
        if not role_allows(who.role, "agent"):
            log.warning("refused %s (%s): instrument commands need an agent", who.name, who.role)
            raise HTTPException(403, f"{who.role} {who.name!r} may not command instruments")
        token, run_id, args = body.get("token"), body.get("run_id"), body.get("args", {})
        if not isinstance(token, int) or not isinstance(run_id, str) or not isinstance(args, dict):
            raise HTTPException(400, "body: {token: int, run_id: str, args: {...}}")
        try:
            result = await service.call(
                who.name, instrument, channel, method, token=token, run_id=run_id, args=args
            )
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        except WireFormatError as exc:
            raise HTTPException(400, str(exc)) from None
        except (StaleToken, LeaseLost) as exc:
            raise HTTPException(409, str(exc)) from None
        except (InstrumentError, ValueError) as exc:
            raise HTTPException(502, {"error": type(exc).__name__, "message": str(exc)}) from None
        return {"result": result}

    return app


def _server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn without its signal handling: the agent owns SIGTERM and Ctrl-C."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return _Server


@contextlib.asynccontextmanager
async def serve_api(
    app: Any, *, host: str, port: int, tls: TlsFiles | None, client_certs: bool
) -> AsyncIterator[int]:
    """Serve ``app`` until the block ends; yields the bound port."""
    import uvicorn

    kw: dict[str, Any] = {}
    if tls is not None:
        kw = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key),
              "ssl_ca_certs": str(tls.ca),
              "ssl_cert_reqs": ssl.CERT_REQUIRED if client_certs else ssl.CERT_NONE}  # fmt: skip
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", access_log=False,
        timeout_graceful_shutdown=5, **kw,
    )  # fmt: skip
    server = _server_class()(config)
    task = asyncio.create_task(server.serve(), name="labrig agent api")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start
                raise OSError(f"the agent API could not listen on {host}:{port}")
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield int(bound)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            async with asyncio.timeout(10.0):
                await task
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

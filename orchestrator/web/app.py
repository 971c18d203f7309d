"""The Starlette application: pages, sign-in, static assets, and the API of :mod:`.api`.

``create_app(config)`` builds it around a :class:`~.source.DataSource` (by default a
:class:`~.source.LocalSource` started and stopped with the app). Pages are static HTML
in ``static/`` with the user, role and CSRF token filled in; everything else is JSON,
server-sent events and downloads under ``/api/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from ..mqtt import MqttSettings
from .api import api_routes
from .assets import Assets
from .auth import User, UserStore
from .local import LocalSource
from .pagedata import prefetch
from .rundata import RunNotFound
from .security import (
    PUBLIC_PATHS,
    REPORT_CSP,
    SESSION_MAX_AGE_S,
    Audit,
    AuthGate,
    LoginThrottle,
    csrf_token,
)
from .series import default_cache_dir
from .source import DataSource

__all__ = ["WebConfig", "create_app"]

STATIC = Path(str(resources.files("labrig.orchestrator.web").joinpath("static")))
PAGES = ("lab", "runs", "run", "queue", "login")


@dataclass
class WebConfig:
    """How ``labrig web`` serves (see ``docs/web.md``)."""

    runs_dir: Path = Path("runs")
    mqtt: MqttSettings | None = None
    prefix: str = "labrig/+"
    users: UserStore | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    secure_cookies: bool = False
    batch_s: float = 0.25
    stale_after_s: float = 30.0
    audit_path: Path | None = None
    work_dir: Path | None = None
    daemon_poll_s: float = 2.0
    #: the lab database (``labrig web --lab``): a lab of many PCs instead of this one
    lab: str | None = None
    lab_poll_s: float = 2.0
    #: where run overviews are kept between restarts (None: in memory only)
    cache_dir: Path | None = field(default_factory=default_cache_dir)

    @property
    def auth(self) -> bool:
        return self.users is not None


class Pages:
    """The HTML pages, read once (naming the assets by their hashed names), with
    per-request values filled in (HTML-escaped)."""

    def __init__(self, assets: Assets) -> None:
        self._text = {
            p: assets.rewrite((STATIC / f"{p}.html").read_text(encoding="utf-8")) for p in PAGES
        }

    def render(self, page: str, request: Request, **values: str) -> HTMLResponse:
        user = request.state.user
        fields = {
            "user": "" if user is None else user.name,
            "role": "" if user is None else user.role,
            "role_note": "" if user is None or not user.why else user.why,
            "csrf": csrf_token(request.session),
            "auth": "1" if request.app.state.config.auth else "0",
            **values,
        }
        text = self._text[page]
        for key, value in fields.items():
            text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
        return HTMLResponse(text)


async def _form(request: Request) -> dict[str, str]:
    """The fields of a small URL-encoded form (sign-in, sign-out)."""
    body = await request.body()
    if len(body) > 16384:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, host or '//') may follow a sign-in."""
    if not target:
        return "/"
    target = unquote(target)
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


async def login_page(request: Request) -> Response:
    if not request.app.state.config.auth:
        return RedirectResponse("/", 303)
    pages: Pages = request.app.state.pages
    return pages.render(
        "login", request, next=_safe_next(request.query_params.get("next")), error=""
    )


async def login(request: Request) -> Response:
    state = request.app.state
    pages: Pages = state.pages
    if not state.config.auth:
        return RedirectResponse("/", 303)
    form = await _form(request)
    target = _safe_next(str(form.get("next") or "/"))
    client = request.client.host if request.client else "?"
    expected = request.session.get("csrf")
    sent = str(form.get("csrf") or "")
    if not (isinstance(expected, str) and secrets.compare_digest(sent, expected)):
        return pages.render(
            "login", request, next=target, error="The form had expired; please sign in again."
        )
    if state.throttle.blocked(client):
        return pages.render(
            "login", request, next=target, error="Too many failed sign-ins; wait a few minutes."
        )
    name = str(form.get("username") or "")[:64]
    user = state.config.users.verify(name, str(form.get("password") or "")[:1024])
    if user is None:
        state.throttle.failed(client)
        state.audit.record(
            User(name or "?", "-"),
            "sign-in",
            "web",
            False,
            "wrong name or password",
            client=client,
        )
        response = pages.render("login", request, next=target, error="Wrong name or password.")
        response.status_code = 401
        return response
    state.throttle.succeeded(client)
    request.session.clear()
    request.session.update({"user": user.name, "iat": int(time.time())})
    csrf_token(request.session)  # a new token for the new session
    state.audit.record(user, "sign-in", "web", True, "signed in", client=client)
    return RedirectResponse(target, 303)


async def logout(request: Request) -> Response:
    form = await _form(request)
    expected = request.session.get("csrf")
    if isinstance(expected, str) and secrets.compare_digest(str(form.get("csrf") or ""), expected):
        request.session.clear()
    return RedirectResponse("/login" if request.app.state.config.auth else "/", 303)


def _page(name: str) -> Any:
    async def handler(request: Request) -> Response:
        pages: Pages = request.app.state.pages
        if name == "run":
            run_id = request.path_params["run_id"]
            source: DataSource = request.app.state.source
            # start reading the run while the browser fetches the scripts; the page's
            # requests then find it read (or wait for the one reader)
            live = source.live_events(run_id)
            asyncio.get_running_loop().run_in_executor(None, prefetch, source, run_id, live)
            return pages.render(name, request, run_id=run_id)
        return pages.render(name, request)

    return handler


async def report(request: Request) -> Response:
    source: DataSource = request.app.state.source
    run_id = request.path_params["run_id"]
    try:
        path = await asyncio.to_thread(source.results.report, run_id)
    except RunNotFound as exc:
        return HTMLResponse(f"<p>{html.escape(str(exc))}</p>", 404)
    return FileResponse(
        path,
        media_type="text/html",
        headers={"content-security-policy": REPORT_CSP, "cache-control": "no-store"},
    )


async def favicon(request: Request) -> Response:
    assets: Assets = request.app.state.assets
    return assets.response(request, "favicon.svg")


async def static(request: Request) -> Response:
    assets: Assets = request.app.state.assets
    return assets.response(request, request.path_params["name"])


def _source(config: WebConfig, work: Path) -> DataSource:
    common: dict[str, Any] = {"mqtt": config.mqtt, "prefix": config.prefix,
                              "stale_after_s": config.stale_after_s,
                              "cache_dir": config.cache_dir}  # fmt: skip
    if config.lab is not None:
        from .labsource import LabSource

        return LabSource(config.lab, config.runs_dir, work, poll_s=config.lab_poll_s, **common)
    return LocalSource(config.runs_dir, work, daemon_poll_s=config.daemon_poll_s, **common)


def create_app(config: WebConfig, source: DataSource | None = None) -> Starlette:
    """The web app; ``source`` defaults to this PC's MQTT, runs directory and daemon."""
    tmp: tempfile.TemporaryDirectory[str] | None = None
    src: DataSource
    if source is not None:
        src = source
    else:
        work = config.work_dir
        if work is None:
            tmp = tempfile.TemporaryDirectory(prefix="labrig-web-")
            work = Path(tmp.name)
        src = _source(config, work)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with src:
                yield
        finally:
            if tmp is not None:
                tmp.cleanup()

    assets = Assets(STATIC)
    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", _page("lab")),
        Route("/runs", _page("runs")),
        Route("/runs/{run_id}", _page("run")),
        Route("/runs/{run_id}/report", report),
        Route("/queue", _page("queue")),
        Route("/favicon.svg", favicon),
        Mount("/api", routes=api_routes()),
        Route("/static/{name:path}", static),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=config.secret_key,
            session_cookie="labrig_session",
            max_age=SESSION_MAX_AGE_S,
            same_site="strict",
            https_only=config.secure_cookies,
        ),
        Middleware(AuthGate, users=config.users, roles=src.role_of,
                   public=assets.public_urls(PUBLIC_PATHS)),
    ]  # fmt: skip
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.config = config
    app.state.source = src
    app.state.assets = assets
    app.state.pages = Pages(assets)
    app.state.audit = Audit(config.audit_path)
    app.state.throttle = LoginThrottle()
    return app

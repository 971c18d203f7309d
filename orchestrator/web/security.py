"""Sign-in, sessions, CSRF, security headers and the audit trail of the web app.

- With users configured (:class:`~.auth.UserStore`), no page, API or asset answers
  without a signed-in user, except the sign-in page and its style sheet.
- Sessions are signed cookies (Starlette's ``SessionMiddleware``, itsdangerous):
  ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when asked, 12 h at most. The user's
  role is read from the users file on every request, so a change takes effect at once.
- Every request that changes something (POST to ``/api/...``) must carry the session's
  CSRF token in ``X-CSRF-Token``, and an ``Origin`` header, when sent, must be this
  host. The sign-in and sign-out forms carry it as a field.
- Every command, submission and sign-in is written to the audit file (JSON lines) and
  the ``labrig.web.audit`` logger.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .auth import User, UserStore

__all__ = ["PUBLIC_PATHS", "Audit", "AuthGate", "LoginThrottle", "csrf_token", "session_user"]

audit_log = logging.getLogger("labrig.web.audit")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ANONYMOUS = User("anonymous", "viewer")
SESSION_MAX_AGE_S = 12 * 3600
#: what answers without a signed-in user: the sign-in page and what it loads (the assets
#: under their hashed names too, see :mod:`.assets`)
PUBLIC_PATHS = ("/login", "/static/app.css", "/static/theme.js", "/static/favicon.svg",
                "/favicon.svg")  # fmt: skip
_UNSAFE = ("POST", "PUT", "PATCH", "DELETE")

_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# the HTML report: embedded PNGs and its own <style>, never a script
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def session_user(session: MutableMapping[str, Any], users: UserStore | None) -> User | None:
    """The signed-in user of a session (as the users file says now), or None."""
    if users is None:
        return ANONYMOUS
    name = session.get("user")
    issued = session.get("iat")
    if not isinstance(name, str) or not isinstance(issued, int | float):
        return None
    if time.time() - issued > SESSION_MAX_AGE_S:
        return None
    return users.user(name)


def _same_origin(scope: Scope) -> bool:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return bool(urlsplit(origin).netloc == headers.get("host"))


class AuthGate:
    """ASGI middleware: sign-in required, CSRF checked, security headers added."""

    def __init__(
        self, app: ASGIApp, users: UserStore | None, roles: Callable[[User], User] | None = None,
        public: tuple[str, ...] = PUBLIC_PATHS,
    ) -> None:  # fmt: skip
        self.app = app
        self.users = users
        self.roles = roles  # the data source's say on a user's role (the lab database's)
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        session = scope.get("session", {})
        user = session_user(session, self.users)
        if user is not None and self.roles is not None:
            user = self.roles(user)
        scope.setdefault("state", {})["user"] = user
        public = path in self.public
        if user is None and not public:
            if path.startswith("/api/"):
                await _plain(send, 401, {"error": "sign in first"})
            else:
                target = path + (
                    "?" + scope["query_string"].decode() if scope["query_string"] else ""
                )
                await _redirect(send, "/login?next=" + quote(target, safe=""))
            return
        if scope["method"] in _UNSAFE and path.startswith("/api/"):
            sent = dict(scope.get("headers", [])).get(b"x-csrf-token", b"").decode("latin-1")
            expected = session.get("csrf")
            if not (isinstance(expected, str) and hmac.compare_digest(sent, expected)):
                await _plain(send, 403, {"error": "missing or wrong CSRF token; reload the page"})
                return
            if not _same_origin(scope):
                await _plain(send, 403, {"error": "cross-origin request refused"})
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", _PAGE_CSP.encode()))
                if b"cache-control" not in names and not path.startswith("/static/"):
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = headers + [h for h in extra if h[0] not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class LoginThrottle:
    """At most ``limit`` failed sign-ins per client address in ``window_s``."""

    def __init__(self, limit: int = 10, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = {}

    def blocked(self, client: str) -> bool:
        q = self._fails.get(client)
        now = time.monotonic()
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q is not None and len(q) >= self.limit

    def failed(self, client: str) -> None:
        if len(self._fails) > 10_000:
            self._fails.clear()
        self._fails.setdefault(client, deque()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)


@dataclass
class Audit:
    """Appends one JSON line per audited action to ``path`` (and logs it)."""

    path: Path | None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def record(self, user: User, action: str, target: str, accepted: bool, reason: str,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
        entry = {
            "time": time.time(),
            "user": user.name,
            "role": user.role,
            "action": action,
            "target": target,
            "accepted": accepted,
            "reason": reason,
            **extra,
        }
        audit_log.info(
            "%s %s %s by %s (%s): %s",
            action,
            target,
            "accepted" if accepted else "refused",
            user.name,
            user.role,
            reason,
        )
        if self.path is not None:
            line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
        return entry

"""The pages' scripts, style sheets and chart library, served under names that carry a
hash of their content, so a browser keeps them for a year and never asks again.

``/static/run.3f2a9c1b0d.js`` is ``static/run.js`` as it is now: its answer says
``Cache-Control: max-age=31536000, immutable``; when the file changes (a new labrig),
its name changes and the pages name the new one. The plain name (``/static/run.js``)
still answers, with ``Cache-Control: no-cache`` and an ``ETag`` (the browser asks each
time, and gets ``304 Not Modified``). Text assets are gzipped once, at start, for the
clients that accept it. The HTML pages are not assets: they carry the user and the CSRF
token and are never stored (``no-store``).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["IMMUTABLE", "Asset", "Assets"]

#: a hashed name never changes its content (``private``: behind a sign-in, no shared cache)
IMMUTABLE = "private, max-age=31536000, immutable"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".md": "text/plain; charset=utf-8"}  # fmt: skip
_ZIPPED = (".js", ".css", ".svg")
_REFERENCE = re.compile(r"""(["'(])/(static/[A-Za-z0-9_./-]+|favicon\.svg)(["')])""")


@dataclass(frozen=True)
class Asset:
    """One file: its bytes (and gzipped bytes), type, hash and hashed name."""

    name: str  # relative to the static folder, "/"-separated
    body: bytes
    zipped: bytes | None
    media_type: str
    digest: str

    @property
    def hashed(self) -> str:
        """``vendor/uplot/uPlot.iife.min.<hash>.js`` for ``vendor/uplot/uPlot.iife.min.js``."""
        head, dot, ext = self.name.rpartition(".")
        return f"{head}.{self.digest}.{ext}" if dot else f"{self.name}.{self.digest}"

    @property
    def etag(self) -> str:
        """Weak: the gzipped and the plain answer are the same file."""
        return f'W/"{self.digest}"'


class Assets:
    """Every file of ``root`` but the HTML pages, read once, hashed and gzipped."""

    def __init__(self, root: Path) -> None:
        self._by_name: dict[str, Asset] = {}
        self._by_hashed: dict[str, Asset] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.suffix == ".html":
                continue
            name = path.relative_to(root).as_posix()
            body = path.read_bytes()
            zipped = gzip.compress(body, 9, mtime=0) if path.suffix in _ZIPPED else None
            media = _TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "text/plain"
            asset = Asset(name, body, zipped, media, hashlib.sha256(body).hexdigest()[:10])
            self._by_name[name] = asset
            self._by_hashed[asset.hashed] = asset

    def url(self, name: str) -> str:
        """The hashed address of ``name`` (``static/``-relative)."""
        return "/static/" + self._by_name[name].hashed

    def public_urls(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Both addresses of each of ``names`` (paths such as ``/static/app.css``)."""
        out: list[str] = []
        for path in names:
            out.append(path)
            name = path.removeprefix("/static/")
            if path.startswith("/static/") and name in self._by_name:
                out.append(self.url(name))
        return tuple(out)

    def rewrite(self, html: str) -> str:
        """``"/static/run.js"`` in a page becomes its hashed address (``/favicon.svg``
        too: the icon's file is ``static/favicon.svg``)."""

        def one(m: re.Match[str]) -> str:
            name = m.group(2).removeprefix("static/")
            if name not in self._by_name:
                return m.group(0)
            return f"{m.group(1)}{self.url(name)}{m.group(3)}"

        return _REFERENCE.sub(one, html)

    def lookup(self, name: str) -> tuple[Asset, bool] | None:
        """The asset at ``static/<name>`` and whether ``name`` is its hashed name."""
        hit = self._by_hashed.get(name)
        if hit is not None:
            return hit, True
        plain = self._by_name.get(name)
        return (plain, False) if plain is not None else None

    def response(self, request: Request, name: str) -> Response:
        """The answer to ``GET /static/<name>``."""
        found = self.lookup(name)
        if found is None:
            return Response("not found", 404, media_type="text/plain")
        asset, hashed = found
        headers = {
            "cache-control": IMMUTABLE if hashed else "private, no-cache",
            "etag": asset.etag,
            "vary": "accept-encoding",
        }
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        body = asset.body
        if asset.zipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = asset.zipped
            headers["content-encoding"] = "gzip"
        return Response(body, media_type=asset.media_type, headers=headers)

"""The JSON API, the live streams (server-sent events) and the downloads, under ``/api``.

Streams: ``/api/lab/stream`` sends a ``snapshot`` of every channel, then ``rows`` events
with the rows changed in the last batch period (coalesced per browser, see
:mod:`.feeds`), and a ``status`` event every few seconds (connections, server time).
``/api/runs/<id>/stream`` sends the run's new readings and events as they come.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from .auth import User
from .bodies import GZIP_FROM
from .pagedata import cycle_columns, cycles_plot, first_events, whole_series
from .results import DOWNLOADS, dumps
from .rundata import RunNotFound
from .source import DataSource, SourceRefused, SourceUnavailable, SubmitRequest

__all__ = ["api_routes"]

COMMANDS = {"pause": "pause", "resume": "resume", "continue": "resume", "abort": "abort"}
_MAX_BODY = 256 * 1024
_SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def _json(obj: Any, status: int = 200, request: Request | None = None) -> Response:
    """JSON; a large body gzipped (fast level) for a client that accepts it, since a
    whole-run view or a long cycle table is a few hundred kilobytes (a phone on Wi-Fi)."""
    body = dumps(obj).encode()
    accepts = request is not None and "gzip" in request.headers.get("accept-encoding", "")
    if not accepts or len(body) < GZIP_FROM:
        return Response(body, status, media_type="application/json")
    headers = {"content-encoding": "gzip", "vary": "accept-encoding"}
    zipped = gzip.compress(body, compresslevel=1, mtime=0)
    return Response(zipped, status, media_type="application/json", headers=headers)


def _src(request: Request) -> DataSource:
    source: DataSource = request.app.state.source
    return source


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {dumps(data)}\n\n".encode()


def _float(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise ValueError("request too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


# ---------------------------------------------------------------------------- lab


async def me(request: Request) -> Response:
    user: User = request.state.user
    config = request.app.state.config
    return _json(
        {
            "user": user.name,
            "role": user.role,
            "role_note": user.why,
            "auth": config.auth,
            "can_command": config.auth and user.operator,
            "connections": _src(request).connections(),
            "now": time.time(),
        }
    )


async def lab(request: Request) -> Response:
    src = _src(request)
    config = request.app.state.config
    return _json(
        {
            "rows": src.lab_rows(),
            "connections": src.connections(),
            "stale_after_s": config.stale_after_s,
            "now": time.time(),
        },
        request=request,
    )


async def lab_stream(request: Request) -> Response:
    src = _src(request)
    config = request.app.state.config

    async def events() -> AsyncIterator[bytes]:
        with src.lab_feed() as feed:
            yield _sse(
                "snapshot",
                {
                    "rows": src.lab_rows(),
                    "connections": src.connections(),
                    "stale_after_s": config.stale_after_s,
                    "now": time.time(),
                },
            )
            last_status = time.monotonic()
            while True:
                if await feed.wait(5.0):
                    await asyncio.sleep(config.batch_s)  # gather a batch
                    keys = feed.take()
                    yield _sse("rows", {"rows": src.lab_rows(keys), "now": time.time()})
                if time.monotonic() - last_status >= 5.0:
                    last_status = time.monotonic()
                    yield _sse("status", {"connections": src.connections(), "now": time.time()})

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


# ---------------------------------------------------------------------------- runs


async def runs(request: Request) -> Response:
    limit = int(_float(request.query_params.get("limit")) or 500)
    try:
        rows = await _src(request).run_summaries(max(1, min(limit, 5000)))
    except SourceUnavailable as exc:
        return _json({"runs": [], "error": str(exc), "now": time.time()}, 503)
    return _json({"runs": rows, "now": time.time()}, request=request)


async def run_info(request: Request) -> Response:
    try:
        return _json(await _src(request).run_info(request.path_params["run_id"]))
    except RunNotFound as exc:
        return _json({"error": str(exc)}, 404)


_NO_RECORDS = {"t": [], "V": [], "I": [], "T": [], "stored": 0, "shown": 0, "decimated": False,
               "t_min": None, "t_max": None}  # fmt: skip


def _gzip_ok(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "")


def _send(body: tuple[bytes, bool], status: int = 200) -> Response:
    """Encoded JSON (:class:`~.bodies.Encoded`): (bytes, gzipped?)."""
    data, zipped = body
    headers = {"vary": "accept-encoding"}
    if zipped:
        headers["content-encoding"] = "gzip"
    return Response(data, status, media_type="application/json", headers=headers)


def _live(src: DataSource, run_id: str, t_last: float | None, hi: float | None) -> list[Any]:
    """The run's live readings after its stored records (read on the event loop's thread:
    the model changes there only)."""
    row = src.model.row_of_run(run_id)
    live = np.empty((0, 4))
    if row is not None and row.live is not None and (hi is None or t_last is None or hi >= t_last):
        live = row.live.since(t_last if t_last is not None else -math.inf)
    out: list[Any] = np.round(live, 6).tolist()
    return out


async def series(request: Request) -> Response:
    """The stored records in view (read in a worker thread; the whole-run view made once
    per state of the run's files, :mod:`.pagedata`) and the live readings after them."""
    src = _src(request)
    run_id = request.path_params["run_id"]
    q = request.query_params
    n = int(_float(q.get("n")) or 1000)
    n = max(100, min(5000, round(n / 100) * 100))  # whole hundreds: cached whole-run views
    lo, hi = _float(q.get("lo")), _float(q.get("hi"))
    try:
        if lo is None and hi is None:
            enc = await asyncio.to_thread(whole_series, src, run_id, n)
            live = _live(src, run_id, enc.meta.get("t_max"), None)
            return _send(enc.with_live(dumps(live).encode(), _gzip_ok(request)))
        out = dict(await asyncio.to_thread(src.series.window, run_id, lo, hi, n))
    except RunNotFound as exc:
        if src.model.row_of_run(run_id) is None:
            return _json({"error": str(exc)}, 404)
        out = dict(_NO_RECORDS)
    out["live"] = _live(src, run_id, out["t_max"], hi)
    return _json(out, request=request)


async def cycles(request: Request) -> Response:
    """Per-cycle rows; ``?fields=plot``: only what the run page plots, as columns."""
    src = _src(request)
    run_id = request.path_params["run_id"]
    plot = request.query_params.get("fields") == "plot"
    try:
        if plot:
            enc = await asyncio.to_thread(cycles_plot, src, run_id)
            if enc is not None:
                return _send(enc.pick(_gzip_ok(request)))
        rows = await src.run_cycles(run_id)
    except RunNotFound as exc:
        return _json({"error": str(exc)}, 404)
    if plot:
        return _json(cycle_columns(rows), request=request)
    return _json({"cycles": rows}, request=request)


async def events(request: Request) -> Response:
    src = _src(request)
    run_id = request.path_params["run_id"]
    after = int(_float(request.query_params.get("after_seq")) or 0)
    limit = max(1, min(int(_float(request.query_params.get("limit")) or 500), 5000))
    if after <= 0 and limit <= 1000:  # a page's first look: made once per events file
        try:
            enc = await asyncio.to_thread(first_events, src, run_id, limit, src.live_events(run_id))
        except RunNotFound:
            enc = None
        if enc is not None:
            return _send(enc.pick(_gzip_ok(request)))
    got, total = await src.run_events(run_id, after, limit)
    return _json({"events": got, "total": total}, request=request)


async def run_stream(request: Request) -> Response:
    src = _src(request)
    run_id = request.path_params["run_id"]
    batch_s = request.app.state.config.batch_s

    async def stream() -> AsyncIterator[bytes]:
        with src.run_feed(run_id) as feed:
            yield _sse("hello", {"now": time.time()})
            while True:
                if not await feed.wait(5.0):
                    yield _sse("ping", {"now": time.time()})
                    continue
                await asyncio.sleep(batch_s)
                item = feed.take()
                if item["status"]:
                    try:
                        item["info"] = await src.run_info(run_id)
                    except RunNotFound:
                        item["info"] = None
                del item["status"]
                yield _sse("update", item)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def eis_list(request: Request) -> Response:
    try:
        spectra = await asyncio.to_thread(
            _src(request).results.spectra, request.path_params["run_id"]
        )
    except RunNotFound as exc:
        return _json({"error": str(exc)}, 404)
    return _json({"spectra": spectra})


async def eis_one(request: Request) -> Response:
    results = _src(request).results
    p = request.path_params
    try:
        data = await asyncio.to_thread(results.spectrum, p["run_id"], p["name"])
    except RunNotFound as exc:
        return _json({"error": str(exc)}, 404)
    return _json(data)


async def download(request: Request) -> Response:
    results = _src(request).results
    run_id, kind = request.path_params["run_id"], request.path_params["kind"]
    if kind not in DOWNLOADS:
        return _json({"error": f"unknown download {kind!r}: {', '.join(DOWNLOADS)}"}, 404)
    suffix, media = DOWNLOADS[kind]
    name = f"{run_id}{suffix}"
    try:
        if kind == "csv":
            stream = results.csv_stream(run_id)
            first = await asyncio.to_thread(next, stream)  # errors before the headers go
            return StreamingResponse(
                _chain(first, stream),
                media_type=media,
                headers={"content-disposition": f'attachment; filename="{name}"'},
            )
        if kind == "cycles-csv":
            data = await asyncio.to_thread(results.cycles_csv, run_id)
            return Response(
                data, media_type=media,
                headers={"content-disposition": f'attachment; filename="{name}"'},
            )  # fmt: skip
        tmp = tempfile.TemporaryDirectory(prefix="labrig-dl-")
        dest = Path(tmp.name) / name
        try:
            if kind == "parquet":
                await asyncio.to_thread(results.parquet_file, run_id, dest)
            else:
                fmt = "parquet" if kind == "bdf-parquet" else "csv"
                await asyncio.to_thread(results.bdf_file, run_id, fmt, dest)
        except BaseException:
            tmp.cleanup()
            raise
        return FileResponse(
            dest, media_type=media, filename=name, background=BackgroundTask(tmp.cleanup)
        )
    except RunNotFound as exc:
        return _json({"error": str(exc)}, 404)


def _chain(first: bytes, rest: Any) -> Any:
    yield first
    yield from rest


# ---------------------------------------------------------------------------- commands


async def command(request: Request) -> Response:
    src = _src(request)
    state = request.app.state
    user: User = request.state.user
    run_id = request.path_params["run_id"]
    try:
        body = await _body(request)
    except ValueError as exc:
        return _json({"accepted": False, "reason": str(exc)}, 400)
    word = COMMANDS.get(str(body.get("command")))
    if word is None:
        return _json({"accepted": False, "reason": "command must be pause, continue or abort"}, 400)
    note = body.get("note") if isinstance(body.get("note"), str) else None
    note = (note or "").strip()[:200] or None
    if not (state.config.auth and user.operator):
        why = (
            "commands need a signed-in operator (no users are configured: see docs/web.md)"
            if not state.config.auth
            else f"{user.name} is a {user.role}"
            + (f" ({user.why})" if user.why else "")
            + ": only operators may command runs"
        )
        state.audit.record(user, word, run_id, False, why, via="web")
        return _json({"accepted": False, "reason": why}, 403)
    if body.get("confirm") is not True:
        return _json({"accepted": False, "reason": "the command was not confirmed"}, 400)
    result = await src.command(user, run_id, word, note)
    state.audit.record(
        user, word, run_id, result.accepted, result.reason, via=result.via,
        request_id=result.request_id, note=note,
    )  # fmt: skip
    payload = {"accepted": result.accepted, "reason": result.reason, "via": result.via}
    return _json(payload, 200 if result.accepted else 409)


async def queue(request: Request) -> Response:
    return _json(await _src(request).queue())


async def protocols(request: Request) -> Response:
    from labrig.protocols.library import list_library

    entries = await asyncio.to_thread(list_library)
    return _json({"protocols": [{"name": e.name, "title": e.title} for e in entries]})


def _submit_request(body: dict[str, Any]) -> SubmitRequest:
    def text(key: str) -> str | None:
        v = body.get(key)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise ValueError(f"{key} must be text")
        return v.strip()

    cell = text("cell_id")
    if not cell:
        raise ValueError("give the cell's id")
    at = body.get("at")
    if at is not None and not (isinstance(at, int | float) and math.isfinite(at)):
        raise ValueError("the start time is not valid")
    sets_raw = body.get("sets") or {}
    if not isinstance(sets_raw, dict):
        raise ValueError("sets must be an object of cell fields")
    return SubmitRequest(
        cell_id=cell,
        protocol=text("protocol"),
        protocol_yaml=body.get("protocol_yaml") if isinstance(body.get("protocol_yaml"), str)
        and body.get("protocol_yaml", "").strip() else None,
        position=text("position"),
        at=float(at) if at is not None else None,
        after=text("after"),
        sets=tuple((str(k), str(v)) for k, v in sets_raw.items()),
    )  # fmt: skip


async def submit(request: Request) -> Response:
    state = request.app.state
    user: User = request.state.user
    try:
        req = _submit_request(await _body(request))
    except ValueError as exc:
        return _json({"ok": False, "error": str(exc)}, 400)
    what = req.protocol or "pasted protocol"
    if not (state.config.auth and user.operator):
        why = "only signed-in operators may submit runs" + (f" ({user.why})" if user.why else "")
        state.audit.record(user, "submit", what, False, why, via="web")
        return _json({"ok": False, "error": why}, 403)
    try:
        reply = await _src(request).submit(user, req)
    except (ValueError, SourceRefused, SourceUnavailable) as exc:
        state.audit.record(user, "submit", what, False, str(exc), cell=req.cell_id)
        code = 409 if isinstance(exc, SourceRefused) else 503 if isinstance(
            exc, SourceUnavailable) else 400  # fmt: skip
        return _json({"ok": False, "error": str(exc)}, code)
    state.audit.record(
        user, "submit", what, True, f"queued as {reply.get('run_id')} on {reply.get('position')}",
        cell=req.cell_id, run_id=reply.get("run_id"),
    )  # fmt: skip
    return _json({"ok": True, **{k: v for k, v in reply.items() if k != "ok"}})


def api_routes() -> list[Route]:
    return [
        Route("/me", me),
        Route("/lab", lab),
        Route("/lab/stream", lab_stream),
        Route("/runs", runs),
        Route("/runs/{run_id}", run_info),
        Route("/runs/{run_id}/series", series),
        Route("/runs/{run_id}/cycles", cycles),
        Route("/runs/{run_id}/events", events),
        Route("/runs/{run_id}/stream", run_stream),
        Route("/runs/{run_id}/eis", eis_list),
        Route("/runs/{run_id}/eis/{name}", eis_one),
        Route("/runs/{run_id}/download/{kind}", download),
        Route("/runs/{run_id}/command", command, methods=["POST"]),
        Route("/queue", queue),
        Route("/protocols", protocols),
        Route("/submit", submit, methods=["POST"]),
    ]

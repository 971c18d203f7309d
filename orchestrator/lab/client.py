"""Commands from any PC to the lab: submit, pause, continue, abort (``--lab URL``).

Everything goes through the database functions ``labrig_submit`` and ``labrig_command``
(operators only: PostgreSQL refuses anyone else), which record who asked. A command for
a running run is carried out by the agent that runs it; :func:`command` waits for its
answer up to ``wait_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .db import LabUnavailable, connect

__all__ = ["LabRefused", "command", "submit"]


class LabRefused(RuntimeError):
    """The lab refused the request (permission, unknown run, bad state...)."""


@dataclass(frozen=True, slots=True)
class Submitted:
    run_id: str
    agent: str
    position: str
    state: str


def _needs(protocol: Any) -> tuple[str, list[str]]:
    from labrig.protocols.models import ChamberStep, EisStep, FurnaceStep, GasStep

    steps = protocol.steps()
    kind = "furnace" if any(isinstance(s, FurnaceStep | GasStep) for s in steps) else "cell"
    needs = []
    if any(isinstance(s, EisStep) for s in steps):
        needs.append("impedance")
    if any(isinstance(s, ChamberStep) for s in steps):
        needs.append("chamber")
    return kind, needs


def _call(conn: Any, sql: str, args: tuple[Any, ...]) -> Any:
    import psycopg

    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise LabRefused(f"permission denied: {_msg(exc)}") from None
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.RaiseException) as exc:
        raise LabRefused(_msg(exc)) from None
    except psycopg.OperationalError as exc:
        raise LabUnavailable(f"lab database: {_msg(exc)}") from None
    except psycopg.Error as exc:
        raise LabRefused(f"the lab database refused: {_msg(exc)}") from None


def _msg(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary or str(exc).splitlines()[0])


def submit(
    url: str,
    protocol: Any,
    protocol_yaml: str,
    *,
    run_id: str,
    position: str | None = None,
    source: str | None = None,
    seed: int = 0,
    not_before: float | None = None,
    after: str | None = None,
    conn: Any = None,
) -> Submitted:
    """Queue a run in the lab; the agent of the chosen position takes it."""
    import datetime as dt

    kind, needs = _needs(protocol)
    cell = protocol.cell.cell_id if protocol.cell is not None else None
    nb = dt.datetime.fromtimestamp(not_before, dt.UTC) if not_before is not None else None
    own = conn is None
    c = connect(url, app="labrig submit") if own else conn
    try:
        row = _call(
            c,
            "SELECT * FROM labrig_submit(%s, %s, %s, %s::text[], %s, %s, %s, %s, %s::integer, "
            "%s::timestamptz, %s)",
            (
                run_id,
                position,
                kind,
                needs,
                protocol.name,
                protocol_yaml,
                source,
                cell,
                seed,
                nb,
                after,
            ),
        )
    finally:
        if own:
            c.close()
    return Submitted(*row)


def command(
    url: str, run_id: str, op: str, *, note: str | None = None, wait_s: float = 15.0,
    conn: Any = None,
) -> tuple[str, str]:  # fmt: skip
    """pause | resume | abort; returns (state, reason) once the agent answered
    (``pending`` if it did not within ``wait_s``)."""
    own = conn is None
    c = connect(url, app="labrig command") if own else conn
    try:
        cid, state, reason = _call(
            c,
            "SELECT * FROM labrig_command(%s, %s, %s, %s::real)",
            (run_id, op, note, max(wait_s, 1)),
        )
        deadline = time.monotonic() + wait_s
        while cid is not None and state == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
            state, reason = _call(c, "SELECT state, reason FROM commands WHERE id = %s", (cid,))
        if state == "pending":
            reason = f"the agent has not answered within {wait_s:g} s (offline?)"
        return str(state), str(reason or "")
    finally:
        if own:
            c.close()

"""Read the lab database: runs, agents, bookings, events. For ``labrig ls --lab``, the web
app and scripts; every function takes a psycopg (sync) connection and returns plain
JSON-ready dicts. A viewer role is enough for all of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AGENT_OFFLINE", "lab_logins", "list_agents", "list_bookings", "list_positions",
           "list_queue", "list_runs", "run_cycles", "run_events"]  # fmt: skip

#: an agent whose last heartbeat is older than this many heartbeat periods is offline
AGENT_OFFLINE = 3

# the epochs and ages come as float8 (extract() gives numeric, a Decimal per value): the rows
# are then ready for JSON as the driver returns them, which matters for 10,000 runs
_RUNS = """
SELECT r.run_id, r.agent, r.position, r.protocol, r.cell_id, r.state, r.reason, r.cycle,
       r.step, r.eta_s, r.run_time_s, extract(epoch FROM r.submitted_at)::float8,
       r.submitted_by, extract(epoch FROM r.started_at)::float8,
       extract(epoch FROM r.ended_at)::float8, r.last_seq,
       coalesce(a.state = 'online' AND a.heartbeat_at > clock_timestamp()
                - make_interval(secs => a.heartbeat_s * {k}), false),
       extract(epoch FROM clock_timestamp() - a.heartbeat_at)::float8,
       extract(epoch FROM r.claimed_at)::float8, extract(epoch FROM r.not_before)::float8,
       r.after_run, r.status_at
FROM runs r LEFT JOIN agents a ON a.name = r.agent
{where}
ORDER BY r.submitted_at DESC, r.run_id
LIMIT %(limit)s
"""
_RUN_COLS = ("run_id", "agent", "position", "protocol", "cell_id", "state", "reason", "cycle",
             "step", "eta_s", "run_time_s", "submitted", "submitted_by", "started", "ended",
             "last_seq", "agent_online", "heartbeat_age_s", "claimed", "not_before", "after_run",
             "status_at")  # fmt: skip


def _num(x: Any) -> Any:
    return float(x) if x is not None and not isinstance(x, bool | int | str) else x


def list_runs(
    conn: Any,
    *,
    agent: str | None = None,
    states: list[str] | None = None,
    limit: int = 100_000,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Every run (newest first) with its agent and whether that agent is online; ``run_id``
    gives one run (a list of none or one)."""
    cond, args = [], {"limit": limit, "agent": agent, "states": states, "run_id": run_id}
    if agent is not None:
        cond.append("r.agent = %(agent)s")
    if run_id is not None:
        cond.append("r.run_id = %(run_id)s")
    if states:
        cond.append("r.state = ANY(%(states)s)")
    where = ("WHERE " + " AND ".join(cond)) if cond else ""
    with conn.cursor() as cur:
        cur.execute(_RUNS.format(where=where, k=AGENT_OFFLINE), args)
        rows = cur.fetchall()
    return [dict(zip(_RUN_COLS, row, strict=True)) for row in rows]


def list_agents(conn: Any) -> list[dict[str, Any]]:
    """Every agent: host, API address, heartbeat age, online, its positions and runs."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT a.name, a.host, a.pid, a.api_url, a.state,
                   extract(epoch FROM clock_timestamp() - a.heartbeat_at), a.heartbeat_s,
                   a.state = 'online' AND a.heartbeat_at > clock_timestamp()
                       - make_interval(secs => a.heartbeat_s * {AGENT_OFFLINE}),
                   (SELECT count(*) FROM positions p WHERE p.agent = a.name),
                   (SELECT count(*) FROM runs r WHERE r.agent = a.name
                    AND r.state IN ('claimed', 'running', 'paused'))
            FROM agents a ORDER BY a.name"""
        )
        rows = cur.fetchall()
    cols = ("name", "host", "pid", "api_url", "state", "heartbeat_age_s", "heartbeat_s",
            "online", "positions", "active_runs")  # fmt: skip
    out = [{k: _num(v) for k, v in zip(cols, row, strict=True)} for row in rows]
    for a in out:
        a["status"] = "online" if a["online"] else (
            "stopped" if a["state"] == "stopped" else "offline")  # fmt: skip
    return out


def list_bookings(
    conn: Any, *, active_only: bool = True, limit: int = 1000
) -> list[dict[str, Any]]:
    """Bookings of shared instruments (holders first, then the queue, in order)."""
    where = "WHERE b.state IN ('waiting', 'holding')" if active_only else ""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT b.id, b.resource, b.run_id, b.holder, b.state, b.token,
                   extract(epoch FROM b.requested_at), extract(epoch FROM b.granted_at),
                   extract(epoch FROM b.expires_at), extract(epoch FROM b.ended_at), b.end_reason
            FROM bookings b {where}
            ORDER BY b.resource, (b.state = 'holding') DESC, b.id LIMIT %s""",
            (limit,),
        )
        rows = cur.fetchall()
    cols = ("id", "resource", "run_id", "holder", "state", "token", "requested", "granted",
            "expires", "ended", "end_reason")  # fmt: skip
    return [{k: _num(v) for k, v in zip(cols, row, strict=True)} for row in rows]


def run_events(
    conn: Any, run_id: str, *, after_seq: int = 0, last: int | None = None
) -> list[dict[str, Any]]:
    """A run's mirrored events, in order (``last``: only the newest that many)."""
    newest = "" if last is None else " ORDER BY seq DESC LIMIT %s"
    args: tuple[Any, ...] = (run_id, after_seq) if last is None else (run_id, after_seq, last)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT * FROM (SELECT run_id, seq, kind, wall_time, run_time_s, data FROM events "
            f"WHERE run_id = %s AND seq > %s{newest}) e ORDER BY seq",
            args,
        )
        rows = cur.fetchall()
    cols = ("run_id", "seq", "kind", "wall_time", "run_time_s", "data")
    return [dict(zip(cols, row, strict=True)) for row in rows]


def run_cycles(conn: Any, run_id: str) -> list[dict[str, Any]]:
    """A run's per-cycle rows (as in its cycles.csv), in order."""
    with conn.cursor() as cur:
        cur.execute("SELECT data FROM cycles WHERE run_id = %s ORDER BY cycle", (run_id,))
        return [dict(r[0]) for r in cur.fetchall()]


_POSITIONS = """
SELECT p.agent, p.name, p.kind, p.cycler, p.impedance, p.chamber,
       coalesce(a.state = 'online' AND a.heartbeat_at > clock_timestamp()
                - make_interval(secs => a.heartbeat_s * {k}), false),
       extract(epoch FROM clock_timestamp() - a.heartbeat_at), a.state,
       r.run_id, r.protocol, r.cell_id, r.state, r.reason, r.cycle, r.step, r.eta_s,
       r.run_time_s, r.status_at, extract(epoch FROM r.claimed_at),
       extract(epoch FROM r.started_at), extract(epoch FROM r.ended_at)
FROM positions p JOIN agents a ON a.name = p.agent
LEFT JOIN (
    SELECT DISTINCT ON (agent, position) * FROM runs
    WHERE state <> 'queued' AND NOT (state = 'claimed' AND not_before > clock_timestamp())
    ORDER BY agent, position, state IN ('claimed', 'running', 'paused') DESC,
             coalesce(started_at, claimed_at, submitted_at) DESC
) r ON r.agent = p.agent AND r.position = p.name
ORDER BY p.agent, p.name
"""
_POSITION_COLS = ("agent", "position", "kind", "cycler", "impedance", "chamber",
                  "agent_online", "heartbeat_age_s", "agent_state", "run_id", "protocol",
                  "cell_id", "state", "reason", "cycle", "step", "eta_s", "run_time_s",
                  "status_at", "claimed", "started", "ended")  # fmt: skip


def list_positions(conn: Any) -> list[dict[str, Any]]:
    """Every position of every agent, whether its agent is online, and the run on it: the
    one claimed (and due), running or paused there, else the newest that ran there
    (``run_id`` None when none did)."""
    with conn.cursor() as cur:
        cur.execute(_POSITIONS.format(k=AGENT_OFFLINE))
        rows = cur.fetchall()
    return [{k: _num(v) for k, v in zip(_POSITION_COLS, row, strict=True)} for row in rows]


def list_queue(conn: Any) -> list[dict[str, Any]]:
    """Runs not yet claimed, in the order agents take them, with their place in the queue
    of their position (1 = next)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT q.id, r.run_id, r.agent, r.position, r.protocol, r.cell_id, r.state,
                   extract(epoch FROM r.submitted_at), r.submitted_by,
                   extract(epoch FROM r.not_before), r.after_run,
                   row_number() OVER (PARTITION BY q.agent, q.position ORDER BY q.id)
            FROM queue q JOIN runs r ON r.run_id = q.run_id ORDER BY q.id"""
        )
        rows = cur.fetchall()
    cols = ("queue_id", "run_id", "agent", "position", "protocol", "cell_id", "state",
            "submitted", "submitted_by", "not_before", "after_run", "place")  # fmt: skip
    return [{k: _num(v) for k, v in zip(cols, row, strict=True)} for row in rows]


def lab_logins(conn: Any) -> dict[str, str]:
    """Login roles of the server and their role in this lab (``viewer``, ``operator``,
    ``agent``; a superuser counts as ``agent``); logins of no lab role are left out."""
    from .schema import role_names

    with conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        groups = role_names(cur.fetchone()[0])
        cur.execute(
            """SELECT r.rolname, r.rolsuper, pg_has_role(r.oid, %(agent)s, 'MEMBER'),
                   pg_has_role(r.oid, %(operator)s, 'MEMBER'),
                   pg_has_role(r.oid, %(viewer)s, 'MEMBER')
            FROM pg_roles r WHERE r.rolcanlogin
                AND EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = %(agent)s)""",
            groups,
        )
        rows = cur.fetchall()
    out = {}
    for name, superuser, agent, operator, viewer in rows:
        role = "agent" if superuser or agent else "operator" if operator else (
            "viewer" if viewer else None)  # fmt: skip
        if role is not None:
            out[str(name)] = role
    return out

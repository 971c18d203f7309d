"""The lab database's schema and its migrations (PostgreSQL).

Migrations are numbered SQL scripts applied in order, each in its own transaction, and
recorded in ``schema_version``; :func:`migrate` applies those not applied yet and is
safe to run again (an advisory lock keeps two agents from migrating at once). Roles are
per lab database, named after it: ``<lab>_viewer`` (reads), ``<lab>_operator`` (reads,
submits, commands: only through the SECURITY DEFINER functions ``labrig_submit`` and
``labrig_command``, which record ``session_user`` as the sender) and ``<lab>_agent``
(the agents: everything). Give each person and each agent a login role that is a member
of one of them (``labrig lab add-user``). The tables are described in ``docs/lab.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "role_names"]

_V1 = """
CREATE TABLE agents (
    name         text PRIMARY KEY,
    host         text,
    pid          integer,
    api_url      text,
    version      text,
    heartbeat_s  real NOT NULL DEFAULT 5,
    started_at   timestamptz,
    heartbeat_at timestamptz,
    stopped_at   timestamptz,
    state        text NOT NULL DEFAULT 'online' CHECK (state IN ('online', 'stopped'))
);
CREATE TABLE instruments (
    agent    text NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
    name     text NOT NULL,
    driver   text NOT NULL,
    kind     text NOT NULL,
    channels integer NOT NULL,
    shared   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (agent, name)
);
CREATE TABLE positions (
    agent     text NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
    name      text NOT NULL,
    kind      text NOT NULL,
    cycler    text,
    impedance text,
    chamber   text,
    PRIMARY KEY (agent, name)
);
CREATE TABLE resources (
    resource   text PRIMARY KEY,
    agent      text NOT NULL,
    instrument text NOT NULL,
    channel    integer NOT NULL,
    fence      bigint NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    run_id        text PRIMARY KEY,
    agent         text NOT NULL,
    position      text NOT NULL,
    protocol      text NOT NULL,
    protocol_yaml text NOT NULL,
    source        text,
    cell_id       text,
    seed          integer NOT NULL DEFAULT 0,
    state         text NOT NULL,
    reason        text,
    state_seq     integer NOT NULL DEFAULT 0,
    not_before    timestamptz,
    after_run     text,
    submitted_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    submitted_by  text NOT NULL DEFAULT session_user,
    claimed_at    timestamptz,
    started_at    timestamptz,
    ended_at      timestamptz,
    cycle         integer,
    step          text,
    eta_s         double precision,
    run_time_s    double precision,
    status_at     double precision,
    last_seq      integer NOT NULL DEFAULT 0
);
CREATE INDEX runs_agent_state ON runs (agent, state);
CREATE INDEX runs_submitted ON runs (submitted_at DESC, run_id);
CREATE TABLE queue (
    id       bigserial PRIMARY KEY,
    run_id   text NOT NULL UNIQUE REFERENCES runs(run_id) ON DELETE CASCADE,
    agent    text NOT NULL,
    position text NOT NULL
);
CREATE INDEX queue_position ON queue (agent, position, id);
CREATE TABLE commands (
    id         bigserial PRIMARY KEY,
    run_id     text NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    agent      text NOT NULL,
    op         text NOT NULL CHECK (op IN ('pause', 'resume', 'abort')),
    sender     text NOT NULL DEFAULT session_user,
    note       text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    state      text NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'accepted', 'refused', 'expired')),
    reason     text,
    done_at    timestamptz
);
CREATE INDEX commands_pending ON commands (agent, id) WHERE state = 'pending';
CREATE TABLE bookings (
    id           bigserial PRIMARY KEY,
    resource     text NOT NULL REFERENCES resources(resource),
    run_id       text NOT NULL,
    holder       text NOT NULL,
    state        text NOT NULL CHECK (state IN ('waiting', 'holding', 'released', 'expired',
                                                'interrupted', 'cancelled')),
    token        bigint,
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    granted_at   timestamptz,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text
);
-- at most one holder per shared instrument, whatever the agents believe
CREATE UNIQUE INDEX bookings_one_holder ON bookings (resource) WHERE state = 'holding';
CREATE INDEX bookings_active ON bookings (resource, id) WHERE state IN ('waiting', 'holding');
CREATE INDEX bookings_run ON bookings (run_id);
CREATE TABLE events (
    run_id     text NOT NULL,
    seq        integer NOT NULL,
    kind       text NOT NULL,
    wall_time  double precision NOT NULL,
    run_time_s double precision NOT NULL,
    data       jsonb NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE cycles (
    run_id text NOT NULL,
    cycle  integer NOT NULL,
    data   jsonb NOT NULL,
    PRIMARY KEY (run_id, cycle)
);

CREATE FUNCTION labrig_submit(
    p_run_id text, p_position text, p_kind text, p_needs text[], p_protocol text,
    p_yaml text, p_source text, p_cell text, p_seed integer, p_not_before timestamptz,
    p_after text
) RETURNS TABLE (run_id text, agent text, "position" text, state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_agent text; v_pos text;
BEGIN
    IF p_run_id IS NULL OR p_run_id !~ '^[A-Za-z0-9_.-]{1,128}$' THEN
        RAISE EXCEPTION 'run id % is not valid', p_run_id USING ERRCODE = '22023';
    END IF;
    IF p_position IS NOT NULL AND position('/' IN p_position) > 0 THEN
        v_agent := split_part(p_position, '/', 1);
        v_pos := split_part(p_position, '/', 2);
    ELSE
        v_pos := p_position;
    END IF;
    SELECT p.agent, p.name INTO v_agent, v_pos
    FROM positions p
    WHERE (v_pos IS NULL OR p.name = v_pos) AND (v_agent IS NULL OR p.agent = v_agent)
      AND p.kind = p_kind
      AND ('impedance' <> ALL(p_needs) OR p.impedance IS NOT NULL)
      AND ('chamber' <> ALL(p_needs) OR p.chamber IS NOT NULL)
    ORDER BY (SELECT count(*) FROM runs r WHERE r.agent = p.agent AND r.position = p.name
              AND r.state NOT IN ('finished', 'aborted', 'failed')), p.agent, p.name
    LIMIT 1;
    IF v_pos IS NULL THEN
        RAISE EXCEPTION 'no position fits (%; kind %, needs %)',
            coalesce(p_position, 'any position'), p_kind, p_needs USING ERRCODE = '22023';
    END IF;
    IF p_position IS NOT NULL AND position('/' IN p_position) = 0 AND (
        SELECT count(*) FROM positions p WHERE p.name = p_position) > 1 THEN
        RAISE EXCEPTION 'position % is on several agents: give AGENT/%', p_position,
            p_position USING ERRCODE = '22023';
    END IF;
    IF p_after IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = p_after) THEN
        RAISE EXCEPTION 'after %: no such run', p_after USING ERRCODE = '22023';
    END IF;
    INSERT INTO runs (run_id, agent, position, protocol, protocol_yaml, source, cell_id, seed,
                      state, not_before, after_run)
    VALUES (p_run_id, v_agent, v_pos, p_protocol, p_yaml, p_source, p_cell, p_seed, 'queued',
            p_not_before, p_after);
    INSERT INTO queue (run_id, agent, position) VALUES (p_run_id, v_agent, v_pos);
    PERFORM pg_notify('labrig_queue', v_agent);
    RETURN QUERY SELECT p_run_id, v_agent, v_pos, 'queued'::text;
END $$;

CREATE FUNCTION labrig_command(p_run text, p_op text, p_note text, p_wait_s real)
RETURNS TABLE (command_id bigint, state text, reason text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    r runs%ROWTYPE; v_id bigint;
BEGIN
    IF p_op NOT IN ('pause', 'resume', 'abort') THEN
        RAISE EXCEPTION 'unknown command % (pause, resume, abort)', p_op USING ERRCODE = '22023';
    END IF;
    SELECT * INTO r FROM runs WHERE runs.run_id = p_run FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no run %', p_run USING ERRCODE = '22023';
    END IF;
    IF r.state IN ('finished', 'aborted', 'failed') THEN
        RETURN QUERY SELECT NULL::bigint, 'refused'::text,
            format('run %s has already ended (%s)', p_run, r.state);
        RETURN;
    END IF;
    IF r.state = 'queued' THEN
        IF p_op <> 'abort' THEN
            RETURN QUERY SELECT NULL::bigint, 'refused'::text,
                format('run %s is queued, not running', p_run);
            RETURN;
        END IF;
        DELETE FROM queue WHERE queue.run_id = p_run;
        UPDATE runs SET state = 'aborted', ended_at = clock_timestamp(),
            reason = format('removed from the queue by %s', session_user)
        WHERE runs.run_id = p_run;
        PERFORM pg_notify('labrig_runs', p_run);
        RETURN QUERY SELECT NULL::bigint, 'accepted'::text, 'removed from the queue'::text;
        RETURN;
    END IF;
    INSERT INTO commands (run_id, agent, op, note, expires_at)
    VALUES (p_run, r.agent, p_op, left(p_note, 200),
            clock_timestamp() + make_interval(secs => greatest(1, least(p_wait_s, 3600))))
    RETURNING id INTO v_id;
    PERFORM pg_notify('labrig_cmd', r.agent);
    RETURN QUERY SELECT v_id, 'pending'::text, NULL::text;
END $$;
"""

_GRANTS_V1 = """
GRANT SELECT ON agents, instruments, positions, resources, runs, queue, commands, bookings,
    events, cycles, schema_version TO {viewer};
GRANT {viewer} TO {operator};
GRANT EXECUTE ON FUNCTION labrig_submit(text, text, text, text[], text, text, text, text,
    integer, timestamptz, text) TO {operator};
GRANT EXECUTE ON FUNCTION labrig_command(text, text, text, real) TO {operator};
GRANT {operator} TO {agent};
GRANT SELECT, INSERT, UPDATE, DELETE ON agents, instruments, positions, resources, runs, queue,
    commands, bookings, events, cycles TO {agent};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {agent};
"""
# functions are executable by PUBLIC unless told otherwise
_REVOKE_V1 = """
REVOKE ALL ON FUNCTION labrig_submit(text, text, text, text[], text, text, text, text, integer,
    timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION labrig_command(text, text, text, real) FROM PUBLIC;
"""

Migration = Callable[[Any, dict[str, str]], None]


def _v1(cur: Any, roles: dict[str, str]) -> None:
    from psycopg import sql

    for role in roles.values():
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    cur.execute(_V1)
    cur.execute(_REVOKE_V1)
    ids = {k: sql.Identifier(v).as_string(cur.connection) for k, v in roles.items()}
    cur.execute(_GRANTS_V1.format(**ids))


def _submit_v2() -> str:
    """``labrig_submit`` of version 1, choosing its position under a lock: two clients
    submitting at once no longer both take the same least-busy position."""
    start = _V1.index("CREATE FUNCTION labrig_submit(")
    end = _V1.index("END $$;", start) + len("END $$;")
    text = _V1[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    head, _, body = text.partition("\nBEGIN\n")
    lock = f"    PERFORM pg_advisory_xact_lock({_SUBMIT_LOCK_KEY});\n"
    return f"{head}\nBEGIN\n{lock}{body}"


_SUBMIT_LOCK_KEY = 0x6C616273  # held by labrig_submit until its transaction ends


def _v2(cur: Any, roles: dict[str, str]) -> None:
    cur.execute(_submit_v2())  # grants and revokes of the function stay as they were
    # the busy runs of a position, as labrig_submit counts them for every position
    cur.execute(
        "CREATE INDEX IF NOT EXISTS runs_busy_position ON runs (agent, position) "
        "WHERE state NOT IN ('finished', 'aborted', 'failed')"
    )


#: (version, what it does, how)
MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "agents, instruments, positions, runs, queue, commands, bookings, events, cycles", _v1),
    (2, "labrig_submit picks positions one client at a time; index of busy runs", _v2),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_LOCK_KEY = 0x6C616272  # advisory lock held while migrating


def role_names(dbname: str) -> dict[str, str]:
    """The lab's group roles, named after its database."""
    base = re.sub(r"[^a-z0-9_]", "_", dbname.lower())[:40] or "labrig"
    return {r: f"{base}_{r}" for r in ("viewer", "operator", "agent")}


def migrate(conn: Any) -> list[int]:
    """Apply the migrations ``conn``'s database lacks; returns the versions applied.

    ``conn`` is a psycopg (sync) connection of a role that may create tables and roles.
    """
    applied: list[int] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
            "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        have = int(cur.fetchone()[0])
        cur.execute("SELECT current_database()")
        roles = role_names(cur.fetchone()[0])
        if have > SCHEMA_VERSION:
            raise RuntimeError(
                f"the lab database has schema version {have}, newer than this labrig "
                f"knows ({SCHEMA_VERSION}); upgrade labrig"
            )
        for version, description, step in MIGRATIONS:
            if version <= have:
                continue
            with conn.transaction():
                step(cur, roles)
                cur.execute(
                    "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                    (version, description),
                )
            applied.append(version)
    return applied

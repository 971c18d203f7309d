"""What an agent writes about itself to the lab database, and how it takes its runs.

Pure SQL helpers on a psycopg ``AsyncConnection`` (autocommit), used by the agent's loops.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from .config import AgentConfig

__all__ = ["Claimed", "claim_runs", "heartbeat", "pending_commands", "register", "set_command"]


async def register(conn: Any, cfg: AgentConfig, *, api_url: str | None, version: str) -> None:
    """Insert or refresh the agent, its instruments, positions and shared resources."""
    kinds = {"maccor": "cycler", "keithley2450": "cycler", "palmsens": "impedance",
             "espec": "chamber", "eurotherm": "furnace", "alicat": "gas"}  # fmt: skip
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO agents (name, host, pid, api_url, version, heartbeat_s, started_at, "
            "heartbeat_at, stopped_at, state) VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp(),"
            " clock_timestamp(), NULL, 'online') ON CONFLICT (name) DO UPDATE SET host = "
            "EXCLUDED.host, pid = EXCLUDED.pid, api_url = EXCLUDED.api_url, version = "
            "EXCLUDED.version, heartbeat_s = EXCLUDED.heartbeat_s, started_at = "
            "EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, stopped_at = NULL, "
            "state = 'online'",
            (cfg.name, socket.gethostname(), os.getpid(), api_url, version, cfg.lab.heartbeat_s),
        )
        await cur.execute("DELETE FROM instruments WHERE agent = %s", (cfg.name,))
        await cur.executemany(
            "INSERT INTO instruments (agent, name, driver, kind, channels, shared) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    cfg.name,
                    n,
                    i.driver,
                    kinds.get(i.driver, i.driver),
                    i.channels,
                    n in cfg.lab.shared,
                )
                for n, i in cfg.instruments.items()
            ],
        )
        await cur.execute("DELETE FROM positions WHERE agent = %s", (cfg.name,))
        await cur.executemany(
            "INSERT INTO positions (agent, name, kind, cycler, impedance, chamber) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(cfg.name, p.name, p.kind, p.cycler, p.impedance, p.chamber) for p in cfg.positions],
        )
        await cur.executemany(
            "INSERT INTO resources (resource, agent, instrument, channel) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (resource) DO NOTHING",
            [(f"{cfg.name}:{n}/{c}", cfg.name, n, c)
             for n, i in cfg.shared_instruments().items() for c in range(i.channels)],
        )  # fmt: skip


async def heartbeat(conn: Any, agent: str) -> bool:
    """False when the agent's row is gone (register again)."""
    cur = await conn.execute(
        "UPDATE agents SET heartbeat_at = clock_timestamp(), state = 'online', pid = %s "
        "WHERE name = %s RETURNING name",
        (os.getpid(), agent),
    )
    return await cur.fetchone() is not None


async def signed_off(conn: Any, agent: str) -> None:
    await conn.execute(
        "UPDATE agents SET state = 'stopped', stopped_at = clock_timestamp() WHERE name = %s",
        (agent,),
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    run_id: str
    position: str
    protocol_yaml: str
    source: str | None
    seed: int
    not_before: float | None


_HEADS = """
SELECT q.id, q.run_id, q.position, r.protocol_yaml, r.source, r.seed,
       extract(epoch FROM r.not_before), r.after_run,
       (SELECT d.state FROM runs d WHERE d.run_id = r.after_run)
FROM queue q JOIN runs r ON r.run_id = q.run_id
WHERE q.agent = %s AND q.position = ANY(%s)
  AND q.id = (SELECT min(q2.id) FROM queue q2 WHERE q2.agent = q.agent AND q2.position = q.position)
ORDER BY q.id
FOR UPDATE OF q SKIP LOCKED
"""


async def claim_runs(conn: Any, agent: str, idle: list[str]) -> list[Claimed]:
    """Take the first queued run of each idle position (skipping rows another claimer
    holds). A run whose ``after`` dependency has not finished stays first in line; one
    whose dependency ended otherwise is aborted."""
    out: list[Claimed] = []
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_HEADS, (agent, idle))
        rows = await cur.fetchall()
        for qid, run_id, pos, yaml_text, source, seed, nb, after, dep_state in rows:
            if after is not None and dep_state != "finished":
                if dep_state in ("aborted", "failed"):
                    await cur.execute("DELETE FROM queue WHERE id = %s", (qid,))
                    await cur.execute(
                        "UPDATE runs SET state = 'aborted', ended_at = clock_timestamp(), "
                        "reason = %s WHERE run_id = %s",
                        (f"not started: run {after} it depends on ended {dep_state}", run_id),
                    )
                continue
            await cur.execute("DELETE FROM queue WHERE id = %s", (qid,))
            await cur.execute(
                "UPDATE runs SET state = 'claimed', claimed_at = clock_timestamp() "
                "WHERE run_id = %s",
                (run_id,),
            )
            out.append(Claimed(run_id, pos, yaml_text, source, int(seed),
                               float(nb) if nb is not None else None))  # fmt: skip
        if rows:
            await cur.execute("SELECT pg_notify('labrig_runs', %s)", (agent,))
    return out


async def unfinished_runs(conn: Any, agent: str) -> list[tuple[Any, ...]]:
    """This agent's runs the database believes taken and not ended."""
    cur = await conn.execute(
        "SELECT run_id, position, state, protocol_yaml, source, seed, "
        "extract(epoch FROM not_before) FROM runs WHERE agent = %s AND state IN "
        "('claimed', 'running', 'paused', 'stopped')",
        (agent,),
    )
    rows: list[tuple[Any, ...]] = await cur.fetchall()
    return rows


async def pending_commands(conn: Any, agent: str, operator_role: str) -> list[tuple[Any, ...]]:
    """(id, run_id, op, sender, expired, sender_is_operator) of commands waiting for us."""
    cur = await conn.execute(
        "SELECT id, run_id, op, sender, expires_at < clock_timestamp(), "
        "CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = sender) "
        "THEN pg_has_role(sender, %s, 'MEMBER') ELSE false END "
        "FROM commands WHERE agent = %s AND state = 'pending' ORDER BY id",
        (operator_role, agent),
    )
    rows: list[tuple[Any, ...]] = await cur.fetchall()
    return rows


async def set_command(conn: Any, cid: int, state: str, reason: str) -> None:
    await conn.execute(
        "UPDATE commands SET state = %s, reason = %s, done_at = clock_timestamp() WHERE id = %s",
        (state, reason, cid),
    )

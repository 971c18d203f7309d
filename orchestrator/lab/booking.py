"""Lab-wide booking of shared instruments: leases with fencing tokens.

A shared instrument channel is a *resource* (``eis-pc:eis/0``). A run books it in the lab
database: it queues (``waiting``), and when it is first in line, nobody holds the
resource and its owning agent is online, it is granted the lease (``holding``) with a
fencing token - the resource's counter, incremented on every grant, so tokens only grow.
The holder renews the lease every third of its length; a lease not renewed expires.
A unique index allows one ``holding`` booking per resource, whatever any agent believes.

The owning agent checks the token of every command (:class:`Fences`): a token older
than the newest it has seen, or whose lease is not held and live in the database, is
refused; during a long command it keeps checking, and stops the instrument when the
lease is lost. So two runs on two PCs never drive the instrument at once, even when a
network partition leaves a holder believing in a lease that has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .db import AsyncLink, LabUnavailable

__all__ = ["Fences", "Lease", "LeaseLost", "Leases", "Notifier", "StaleToken"]

log = logging.getLogger("labrig.lab.booking")

CHANNELS = ("labrig_queue", "labrig_cmd", "labrig_booking", "labrig_runs")


class StaleToken(PermissionError):
    """A command's fencing token is not the live lease of its resource."""


class LeaseLost(ConnectionError):
    """The lease ended (expired, superseded, or the owner went away) during its use."""


class Notifier:
    """LISTENs on the lab's channels and wakes waiters; reconnects after failures (and
    then wakes everybody, since notifications sent meanwhile were lost)."""

    def __init__(self, url: str, app: str = "labrig-listen") -> None:
        self.url = url
        self.app = app
        self._waiters: dict[str, set[asyncio.Future[None]]] = {c: set() for c in CHANNELS}
        self.connected = asyncio.Event()

    def _wake(self, channel: str | None) -> None:
        names = CHANNELS if channel is None else (channel,)
        for c in names:
            for fut in self._waiters.get(c, set()):
                if not fut.done():
                    fut.set_result(None)
            self._waiters.get(c, set()).clear()

    async def wait(self, channel: str, timeout_s: float) -> None:
        """Until a notification on ``channel`` or ``timeout_s``, whichever comes first."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[channel].add(fut)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await fut
        finally:
            self._waiters[channel].discard(fut)

    async def run(self) -> None:
        """Listen for ever (cancel to stop)."""
        from .db import aconnect

        backoff = 0.2
        while True:
            conn = None
            try:
                conn = await aconnect(self.url, app=self.app)
                for c in CHANNELS:
                    await conn.execute(f"LISTEN {c}")
                self.connected.set()
                backoff = 0.2
                self._wake(None)
                async for n in conn.notifies():
                    self._wake(n.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("listener lost the lab database: %s", exc)
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2.0):
                            await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


@dataclass
class Lease:
    """A granted booking: its fencing token; ``lost`` is set when it ends by itself."""

    booking_id: int
    resource: str
    token: int
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None
    end_state: str = "released"
    end_reason: str | None = None

    def lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()


_GRANT_LOCK = """
SELECT r.fence, (a.state = 'online' AND a.heartbeat_at >
        clock_timestamp() - make_interval(secs => a.heartbeat_s * 3))
FROM resources r LEFT JOIN agents a ON a.name = r.agent
WHERE r.resource = %s FOR UPDATE OF r
"""
_EXPIRE = """
UPDATE bookings SET state = 'expired', ended_at = clock_timestamp(),
       end_reason = 'lease expired (not renewed)'
WHERE resource = %s AND state IN ('holding', 'waiting') AND expires_at < clock_timestamp()
"""
_FIRST = """
SELECT id, state FROM bookings WHERE resource = %s AND state IN ('holding', 'waiting')
ORDER BY (state = 'holding') DESC, id LIMIT 1
"""


class Leases:
    """The holder's side: ``async with leases.hold(resource, run_id) as lease``."""

    def __init__(
        self,
        link: AsyncLink,
        notifier: Notifier,
        *,
        agent: str,
        lease_s: float,
    ) -> None:
        self.link = link
        self.notifier = notifier
        self.agent = agent
        self.lease_s = lease_s

    async def _request(self, resource: str, run_id: str) -> int:
        async def q(conn: Any) -> int:
            cur = await conn.execute(
                "INSERT INTO bookings (resource, run_id, holder, state, expires_at) VALUES "
                "(%s, %s, %s, 'waiting', clock_timestamp() + make_interval(secs => %s)) "
                "RETURNING id",
                (resource, run_id, self.agent, self.lease_s),
            )
            row = await cur.fetchone()
            return int(row[0])

        return int(await self.link.call(q))

    async def _try_grant(self, bid: int, resource: str) -> int | bool | None:
        """The token if granted; None to wait; False if my waiting row is gone."""

        async def q(conn: Any) -> int | bool | None:
            async with conn.transaction():
                cur = await conn.execute(_GRANT_LOCK, (resource,))
                row = await cur.fetchone()
                if row is None:
                    raise LabUnavailable(f"resource {resource} is not registered in the lab")
                owner_online = bool(row[1])
                await conn.execute(_EXPIRE, (resource,))
                cur = await conn.execute(
                    "UPDATE bookings SET expires_at = clock_timestamp() + make_interval(secs => %s)"
                    " WHERE id = %s AND state = 'waiting' RETURNING id",
                    (self.lease_s, bid),
                )
                if await cur.fetchone() is None:
                    return False
                first = await (await conn.execute(_FIRST, (resource,))).fetchone()
                if first is None or int(first[0]) != bid or not owner_online:
                    return None
                cur = await conn.execute(
                    "UPDATE resources SET fence = fence + 1 WHERE resource = %s RETURNING fence",
                    (resource,),
                )
                token = int((await cur.fetchone())[0])
                await conn.execute(
                    "UPDATE bookings SET state = 'holding', token = %s, granted_at = "
                    "clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => %s)"
                    " WHERE id = %s",
                    (token, self.lease_s, bid),
                )
                return token

        result: int | bool | None = await self.link.call(q)
        return result

    async def _grant(self, resource: str, run_id: str) -> tuple[int, int]:
        """Wait (FIFO, lab-wide) for the resource; returns (booking id, token)."""
        bid: int | None = None
        poll = min(1.0, self.lease_s / 4)
        while True:
            try:
                if bid is None:
                    bid = await self._request(resource, run_id)
                got = await self._try_grant(bid, resource)
            except LabUnavailable as exc:
                log.warning("booking %s for %s: %s; retrying", resource, run_id, exc)
                await asyncio.sleep(poll)
                continue
            if got is False:
                bid = None  # my place expired (the database was away): queue again
                continue
            if got is not None and got is not True:
                return bid, int(got)
            await self.notifier.wait("labrig_booking", poll)

    async def _renew(self, lease: Lease) -> None:
        deadline = time.monotonic() + self.lease_s

        async def q(conn: Any) -> bool:
            cur = await conn.execute(
                "UPDATE bookings SET expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE id = %s AND state = 'holding' AND expires_at > clock_timestamp() "
                "RETURNING id",
                (self.lease_s, lease.booking_id),
            )
            return await cur.fetchone() is not None

        while not lease.lost.is_set():
            await asyncio.sleep(self.lease_s / 3)
            t = time.monotonic()
            try:
                ok = await self.link.call(q, deadline_s=self.lease_s / 3)
            except LabUnavailable:
                if time.monotonic() > deadline:
                    lease.lose("lease not renewed in time (lab database unreachable)")
                continue
            if not ok:
                lease.lose("lease expired or was ended in the lab database")
                return
            deadline = t + self.lease_s

    async def _end(self, bid: int, state: str, reason: str | None) -> None:
        async def q(conn: Any) -> None:
            await conn.execute(
                "UPDATE bookings SET state = %s, ended_at = clock_timestamp(), end_reason = %s"
                " WHERE id = %s AND state IN ('waiting', 'holding')",
                (state, reason, bid),
            )
            await conn.execute("SELECT pg_notify('labrig_booking', %s)", (str(bid),))

        try:
            await self.link.call(q, deadline_s=5.0)
        except LabUnavailable as exc:
            # it expires by itself within one lease length
            log.warning("booking %d not ended (%s); its lease expires by itself", bid, exc)

    @contextlib.asynccontextmanager
    async def hold(
        self, resource: str, run_id: str, on_wait: Callable[[str, float], None] | None = None
    ) -> AsyncIterator[Lease]:
        """Wait for, hold (renewing) and finally end one lease on ``resource``;
        ``on_wait(resource, seconds)`` hears how long the wait was."""
        t0 = time.monotonic()
        bid: int | None = None
        lease: Lease | None = None
        try:
            bid, token = await self._grant(resource, run_id)
            waited = time.monotonic() - t0
            if on_wait is not None and waited > 0.05:
                on_wait(resource, waited)
            lease = Lease(bid, resource, token)
            # owned by this block: cancelled and awaited when it ends (a TaskGroup would
            # wrap the body's own errors in an ExceptionGroup)
            renew = asyncio.create_task(self._renew(lease), name=f"lease {resource} {run_id}")
            try:
                yield lease
            finally:
                renew.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renew
        finally:
            if bid is not None:
                why: str | None
                if lease is None:
                    state, why = "cancelled", "gave up waiting"
                else:
                    state, why = lease.end_state, lease.end_reason
                await self._end(bid, state, why)


class Fences:
    """The owner's side: is this token the live lease of its resource?"""

    def __init__(self, link: AsyncLink) -> None:
        self.link = link
        self.newest: dict[str, int] = {}
        self._live_until: dict[str, tuple[int, float]] = {}

    async def check(self, resource: str, token: int) -> float:
        """Seconds the lease has left; :class:`StaleToken` if it is not live."""
        newest = self.newest.get(resource, 0)
        if token < newest:
            raise StaleToken(f"token {token} is stale: {resource} has seen token {newest}")

        async def q(conn: Any) -> Any:
            cur = await conn.execute(
                "SELECT state, extract(epoch FROM expires_at - clock_timestamp()) "
                "FROM bookings WHERE resource = %s AND token = %s",
                (resource, token),
            )
            return await cur.fetchone()

        try:
            row = await self.link.call(q, deadline_s=3.0)
        except LabUnavailable:
            known = self._live_until.get(resource)
            if known is not None and known[0] == token and time.monotonic() < known[1]:
                return known[1] - time.monotonic()
            raise StaleToken(
                f"token {token} for {resource} cannot be confirmed (lab database unreachable)"
            ) from None
        if row is None:
            raise StaleToken(f"token {token} was never granted for {resource}")
        state, left = row[0], float(row[1])
        if state != "holding" or left <= 0:
            raise StaleToken(f"token {token} for {resource} is not live (booking {state})")
        if token > newest:
            self.newest[resource] = token
        self._live_until[resource] = (token, time.monotonic() + left)
        return left

"""Read replicas: which PostgreSQL serves a read, and read-your-write across their lag.

Writes, migrations, maintenance and everything about users and sources use the primary
pool (`Database.pool`). Searches, exports, histograms, summaries and the explorer's reads
take their connection from `ReadPools.acquire()`, which hands out a streaming replica's
connection when one is in rotation and has caught up, else the primary's.

Read-your-write: a replica serves a read only once it has replayed the primary's WAL
insert position as read *after* the read began (`pg_current_wal_insert_lsn()`, one round
trip to the primary). Anything the reader can know was written (a generation counter it
has just read from the cache, which writers bump after their commit; a durable ingest's
acknowledgement, sent after the commit) is WAL before that position, so the replica's
answer holds it. A read waits at most `read_replica_max_lag_ms` for its replica to get
there, then reads the primary instead, and the replica leaves the rotation.

Rotation: every CHECK_INTERVAL_S each replica is asked how far it has replayed. One that
does not answer, is not in recovery (promoted, or not a replica at all) or lags more than
the max lag is out of rotation; it comes back once it answers and lags at most half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from logkeep import metrics

log = structlog.get_logger(__name__)

CHECK_INTERVAL_S = 1.0
# A replica that takes longer than this to accept a connection or answer a check is down.
CHECK_TIMEOUT_S = 2.0
# While a read waits for its replica to replay: first poll after 1 ms, doubling to 20 ms.
FIRST_POLL_S = 0.001
MAX_POLL_S = 0.02
# Positions as byte offsets in the WAL: numbers compare, pg_lsn text does not.
PRIMARY_POSITION_SQL = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
REPLAYED_SQL = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"
REPLICA_STATUS_SQL = (
    "SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS replayed"
)
# WAL pages (XLOG_BLCKSZ) start with a header: 24 bytes, 40 on a segment's first page.
WAL_PAGE_BYTES = 8192
WAL_PAGE_HEADERS = (24, 40)

# What a replica that is down, restarting, promoted or unreachable raises.
REPLICA_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class ReadSource(Protocol):
    """Where a repository gets a connection for reading: the primary pool or ReadPools."""

    def acquire(self) -> AbstractAsyncContextManager[PoolConnectionProxy[Any]]: ...


def reached(replayed: int, target: int) -> bool:
    """Whether a replica that replayed up to `replayed` holds everything the primary had
    inserted at `target`. The insert position of a primary whose last record ended on a
    page boundary points past the next page's header, where no record ends yet."""
    if replayed >= target:
        return True
    offset = target % WAL_PAGE_BYTES
    return offset in WAL_PAGE_HEADERS and replayed >= target - offset


class ReplicaState(StrEnum):
    UNCHECKED = "unchecked"
    STREAMING = "streaming"  # in rotation
    BEHIND = "behind"
    DOWN = "down"
    NOT_A_REPLICA = "not_a_replica"


@dataclass
class ReplicaStatus:
    number: int  # 1-based position in LOGKEEP_DATABASE_READ_URLS
    target: str  # host:port/database, no credentials
    state: ReplicaState = ReplicaState.UNCHECKED
    error: str = ""
    replayed: int = 0
    lag_s: float = 0.0
    lag_bytes: int = 0

    @property
    def in_rotation(self) -> bool:
        return self.state is ReplicaState.STREAMING

    def public(self, *, detailed: bool) -> dict[str, Any]:
        """What /readyz shows; hosts and error texts only to callers who may see them."""
        shown: dict[str, Any] = {
            "replica": self.number,
            "in_rotation": self.in_rotation,
            "state": self.state.value,
            "lag_s": round(self.lag_s, 3),
        }
        if detailed:
            shown["target"] = self.target
            if self.error:
                shown["error"] = self.error
        return shown


class NotStreaming(Exception):
    """The server answered, but it is not replaying WAL (promoted, or a primary)."""


@dataclass
class Replica:
    pool: asyncpg.Pool
    status: ReplicaStatus


PoolFactory = Callable[[str], Awaitable[asyncpg.Pool]]


class ReadPools:
    """The primary pool and the replicas' pools; `acquire()` picks one per read."""

    def __init__(
        self,
        primary: asyncpg.Pool,
        *,
        max_lag_s: float,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self._primary = primary
        self._max_lag_s = max_lag_s
        self._check_interval_s = check_interval_s
        self._replicas: list[Replica] = []
        self._turn = 0
        # (monotonic time, primary insert position) of each check: how long ago the
        # primary wrote what a replica has not replayed yet.
        history = int(max(60.0, 4 * max_lag_s) / check_interval_s) + 2
        self._positions: deque[tuple[float, int]] = deque(maxlen=history)
        self._monitor: asyncio.Task[None] | None = None

    @property
    def replicas(self) -> list[ReplicaStatus]:
        return [r.status for r in self._replicas]

    async def start(
        self, dsns: Sequence[str], make_pool: PoolFactory, describe: Callable[[str], str]
    ) -> None:
        """Open a (lazily connecting) pool per replica, check them once, then keep checking."""
        for number, dsn in enumerate(dsns, start=1):
            pool = await make_pool(dsn)
            self._replicas.append(Replica(pool, ReplicaStatus(number, describe(dsn))))
        if self._replicas:
            await self.check()
            self._monitor = asyncio.create_task(self._keep_checking())

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        for replica in self._replicas:
            await replica.pool.close()
        self._replicas = []

    # -- reads ----------------------------------------------------------------------------

    def _rotation(self) -> list[Replica]:
        """Replicas in rotation, a different one first each time."""
        ready = [r for r in self._replicas if r.status.in_rotation]
        if not ready:
            return []
        self._turn = (self._turn + 1) % len(ready)
        return ready[self._turn :] + ready[: self._turn]

    async def primary_position(self) -> int:
        async with self._primary.acquire() as conn:
            return int(await conn.fetchval(PRIMARY_POSITION_SQL))

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy[Any]]:
        """A connection to read from: a replica that holds every write committed before
        this call, or the primary."""
        candidates = self._rotation()
        reason = "no_replica"
        if candidates:
            target = await self.primary_position()
            reason = "replica_error"
            for replica in candidates:
                conn = await self._caught_up(replica, target)
                if conn is None:
                    if replica.status.state is ReplicaState.BEHIND:
                        reason = "replica_behind"
                        break  # the others were checked no later: do not wait again
                    continue
                metrics.PG_READS.labels("replica", "").inc()
                try:
                    yield conn
                finally:
                    await replica.pool.release(conn)
                return
        metrics.PG_READS.labels("primary", reason).inc()
        async with self._primary.acquire() as conn:
            yield conn

    async def _caught_up(self, replica: Replica, target: int) -> PoolConnectionProxy[Any] | None:
        """A connection of `replica` once it has replayed `target`; None (and the
        replica out of rotation) if it is down or does not get there in time."""
        started = time.monotonic()
        deadline = started + self._max_lag_s
        delay = FIRST_POLL_S
        try:
            conn: PoolConnectionProxy[Any] = await replica.pool.acquire(timeout=CHECK_TIMEOUT_S)
        except REPLICA_ERRORS as exc:
            await self._down(replica, exc)
            return None
        try:
            while True:
                replayed = await conn.fetchval(REPLAYED_SQL, timeout=CHECK_TIMEOUT_S)
                if replayed is None:
                    raise NotStreaming("pg_last_wal_replay_lsn() is null: not a replica")
                replica.status.replayed = max(replica.status.replayed, int(replayed))
                if reached(int(replayed), target):
                    metrics.PG_REPLICA_WAIT_SECONDS.observe(time.monotonic() - started)
                    return conn
                if time.monotonic() + delay > deadline:
                    metrics.PG_REPLICA_WAIT_SECONDS.observe(time.monotonic() - started)
                    self._set_state(
                        replica,
                        ReplicaState.BEHIND,
                        f"had not replayed the primary's position after {self._max_lag_s} s",
                    )
                    break
                await asyncio.sleep(delay)
                delay = min(MAX_POLL_S, delay * 2)
        except NotStreaming as exc:
            self._set_state(replica, ReplicaState.NOT_A_REPLICA, str(exc))
        except REPLICA_ERRORS as exc:
            await self._down(replica, exc)
        except BaseException:  # cancelled while waiting: the connection goes back
            await replica.pool.release(conn)
            raise
        await replica.pool.release(conn)
        return None

    # -- rotation -------------------------------------------------------------------------

    async def _keep_checking(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval_s)
            try:
                await self.check()
            except REPLICA_ERRORS as exc:  # the primary: lag cannot be judged this round
                log.warning("replica_check_skipped", error=_describe(exc))

    async def check(self) -> None:
        """Check every replica once and put it in or out of rotation."""
        position = await self.primary_position()
        now = time.monotonic()
        self._positions.append((now, position))
        await asyncio.gather(*(self._check(r, position, now) for r in self._replicas))

    def _lag_s(self, replayed: int, now: float) -> float:
        """How long ago the primary had written WAL the replica has not replayed: from
        the oldest check whose primary position the replica has not reached."""
        for at, position in self._positions:
            if not reached(replayed, position):
                return now - at
        return 0.0

    async def _check(self, replica: Replica, position: int, now: float) -> None:
        status = replica.status
        try:
            async with replica.pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
                row = await conn.fetchrow(REPLICA_STATUS_SQL, timeout=CHECK_TIMEOUT_S)
        except REPLICA_ERRORS as exc:
            await self._down(replica, exc)
            return
        assert row is not None  # SELECT without FROM returns one row
        if not row["recovering"] or row["replayed"] is None:
            reason = "pg_is_in_recovery() is false: promoted, or not a replica"
            self._set_state(replica, ReplicaState.NOT_A_REPLICA, reason)
            return
        replayed = int(row["replayed"])
        status.replayed = max(status.replayed, replayed)
        status.lag_bytes = max(0, position - replayed)
        status.lag_s = self._lag_s(replayed, now)
        metrics.PG_REPLICA_LAG_BYTES.labels(str(status.number)).set(status.lag_bytes)
        metrics.PG_REPLICA_LAG_SECONDS.labels(str(status.number)).set(status.lag_s)
        if status.lag_s > self._max_lag_s:
            self._set_state(replica, ReplicaState.BEHIND, f"{status.lag_s:.1f} s behind")
        elif status.in_rotation or status.lag_s <= self._max_lag_s / 2:
            self._set_state(replica, ReplicaState.STREAMING, "")
        # else: still catching up, stays out until half the max lag.

    async def _down(self, replica: Replica, exc: BaseException) -> None:
        self._set_state(replica, ReplicaState.DOWN, _describe(exc))
        # Its other connections died with it: replaced on their next use, so that the
        # first reads after it comes back do not fail on them.
        await replica.pool.expire_connections()

    def _set_state(self, replica: Replica, state: ReplicaState, error: str) -> None:
        status = replica.status
        was = status.state
        status.state, status.error = state, error
        metrics.PG_REPLICA_IN_ROTATION.labels(str(status.number)).set(int(status.in_rotation))
        if was is state:
            return
        if state is ReplicaState.STREAMING:
            log.info("replica_in_rotation", replica=status.number, target=status.target)
        else:
            log.warning(
                "replica_out_of_rotation",
                replica=status.number,
                target=status.target,
                state=state.value,
                error=error,
            )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]

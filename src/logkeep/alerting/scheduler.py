"""Which process evaluates which rule, and when.

Every process running alerting (each API process, or `logkeep alerts`) makes a pass every
half second: it renews the Redis leases it holds (`SET` only if the value is still its
own token), tries to take the others (`SET NX PX`), and evaluates, for each rule it holds,
every tick that is due since the last one committed (a tick is due `alert_settle_s` after
it, for ingest lag). A lease lasts at most 60 % of the rule's interval, so when its holder
dies another process takes the rule within one interval and evaluates the ticks missed
meanwhile: no notification is skipped. The evaluation's transaction fences ticks in
PostgreSQL (evaluator.py), so a holder paused past its lease cannot commit a tick twice.
With Redis unreachable every process evaluates every rule and the fence alone decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from logkeep import metrics
from logkeep.alerting import store
from logkeep.alerting.evaluator import Evaluator
from logkeep.cache.keys import Keys
from logkeep.db.database import PG_TRANSIENT_ERRORS, StoreUnavailable
from logkeep.domain.alert_rules import ticks

# A store restarting or a pool exhausted: the pass is tried again.
TRANSIENT: tuple[type[Exception], ...] = (*PG_TRANSIENT_ERRORS, StoreUnavailable, OSError)

log = structlog.get_logger("logkeep.alerting")

PASS_S = 0.5
RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def lease_ms(interval_s: int, lease_s: float) -> int:
    """At most 60 % of the interval, so a dead holder's rule moves within one interval."""
    return max(1000, int(min(lease_s, 0.6 * interval_s) * 1000))


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: Keys,
        evaluator: Evaluator,
        *,
        identity: str,
        settle: timedelta,
        lease_s: float,
        concurrency: int,
        max_catchup: int,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._evaluator = evaluator
        self.identity = identity
        self._settle = settle
        self._lease_s = lease_s
        self._slots = asyncio.Semaphore(concurrency)
        self._max_catchup = max_catchup
        self._running: dict[int, asyncio.Task[None]] = {}
        self.held: set[int] = set()
        self._release = redis.register_script(RELEASE)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.one_pass()
                except TRANSIENT as exc:
                    log.warning("alert_pass_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(PASS_S)
        finally:
            for task in self._running.values():
                task.cancel()
            await self.release_all()

    async def one_pass(self) -> None:
        async with self._pool.acquire() as conn:
            rules = await conn.fetch(store.ACTIVE_RULES)
        self.held = await self._leases(rules)
        metrics.ALERT_RULES_HELD.set(len(self.held))
        now = datetime.now(UTC) - self._settle
        for rule in rules:
            rule_id = rule["id"]
            if rule_id not in self.held or rule_id in self._running:
                continue
            interval = timedelta(seconds=rule["interval_seconds"])
            due = ticks(rule["last_tick"], now, interval)
            if rule["last_tick"] is not None and due:
                due = due[-self._max_catchup :]
            if not due or (rule["last_tick"] is not None and due[-1] <= rule["last_tick"]):
                continue
            task = asyncio.create_task(self._evaluate(rule_id, due))
            self._running[rule_id] = task
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        for rule_id, running in list(self._running.items()):
            if running is task:
                del self._running[rule_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("alert_evaluation_failed", error=repr(task.exception()))

    async def _evaluate(self, rule_id: int, due: Sequence[datetime]) -> None:
        async with self._slots:
            for tick in due:
                if rule_id not in self.held:
                    return
                try:
                    await self._evaluator.run_tick(rule_id, tick)
                except TRANSIENT as exc:
                    log.warning(
                        "alert_evaluation_deferred", rule_id=rule_id,
                        error=f"{type(exc).__name__}: {exc}",
                    )  # fmt: skip
                    return  # the tick stays due: the next pass tries again

    async def _leases(self, rules: Sequence[Any]) -> set[int]:
        """The rules this process holds after renewing and taking what it can."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for rule in rules:
                    key = self._keys.alert_lease(rule["id"])
                    ttl = lease_ms(rule["interval_seconds"], self._lease_s)
                    if rule["id"] in self.held:
                        # EVAL, not a registered script's EVALSHA: a Redis Cluster
                        # pipeline refuses EVALSHA, and a new primary after a failover
                        # does not know the script.
                        pipe.eval(RENEW, 1, key, self.identity, ttl)
                    else:
                        pipe.set(key, self.identity, nx=True, px=ttl)
                answers = await pipe.execute()
        except RedisError as exc:
            log.warning("alert_leases_unavailable", error=f"{type(exc).__name__}: {exc}")
            return {rule["id"] for rule in rules}  # the PostgreSQL fence decides alone
        return {rule["id"] for rule, ok in zip(rules, answers, strict=True) if ok}

    async def release_all(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            for rule_id in self.held:
                await self._release(keys=[self._keys.alert_lease(rule_id)], args=[self.identity])
        self.held = set()

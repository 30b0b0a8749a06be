"""Deliver the outbox: claim due notifications (FOR UPDATE SKIP LOCKED, with a claim that
expires if this process dies), send each in its own task, and record the outcome: sent,
or retried with exponential backoff up to `alert_delivery_attempts`, then failed. Each
attempt's failure is in the rule's history and in /metrics. A slow or broken channel
holds only its own notifications: evaluation never waits for delivery."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import structlog

from logkeep import metrics
from logkeep.alerting import store
from logkeep.alerting.channels import Channel, DeliveryError, send
from logkeep.config import Settings
from logkeep.db.database import PG_TRANSIENT_ERRORS, StoreUnavailable

# A store restarting or a pool exhausted: the pass is tried again.
TRANSIENT: tuple[type[Exception], ...] = (*PG_TRANSIENT_ERRORS, StoreUnavailable, OSError)

log = structlog.get_logger("logkeep.alerting")

PASS_S = 0.5
BATCH = 50
IN_FLIGHT = 32
MAX_BACKOFF_S = 600.0
PRUNE_EVERY_S = 3600.0
KEEP_DAYS = 7

CLAIM = """
UPDATE alert_notifications n
SET claimed_until = now() + make_interval(secs => $1), attempts = n.attempts + 1
FROM alert_channels c
WHERE n.id IN (
    SELECT id FROM alert_notifications
    WHERE status = 'pending' AND next_attempt_at <= now()
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY next_attempt_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) AND c.id = n.channel_id
RETURNING n.id, n.idempotency_key, n.rule_id, n.payload, n.attempts, c.id AS channel_id,
          c.name, c.kind, c.url, c.recipients, c.secret
"""
SENT = """
UPDATE alert_notifications SET status = 'sent', sent_at = now(), claimed_until = NULL,
    last_error = ''
WHERE id = $1
"""
RETRY = """
UPDATE alert_notifications
SET next_attempt_at = now() + make_interval(secs => $2), claimed_until = NULL, last_error = $3
WHERE id = $1
"""
FAILED = """
UPDATE alert_notifications SET status = 'failed', claimed_until = NULL, last_error = $2
WHERE id = $1
"""
PRUNE_NOTIFICATIONS = """
DELETE FROM alert_notifications
WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1)
"""
PRUNE_EVENTS = "DELETE FROM alert_events WHERE at < now() - make_interval(days => $1)"


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """2, 4, 8 ... seconds after the 1st, 2nd, 3rd failed attempt, capped at 10 minutes,
    with ±20 % jitter so that many retries do not arrive together."""
    base = min(MAX_BACKOFF_S, 2.0**attempt)
    return base * (0.8 + 0.4 * (rng or random).random())


class Delivery:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(follow_redirects=False)
        self._last_prune = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await self.one_pass()
                    if loop.time() - self._last_prune > PRUNE_EVERY_S:
                        await self.prune()
                        self._last_prune = loop.time()
                except TRANSIENT as exc:
                    log.warning("alert_delivery_pass_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(PASS_S)
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._http.aclose()

    async def one_pass(self) -> int:
        """Claim what is due and start sending it; how many were claimed."""
        free = IN_FLIGHT - len(self._tasks)
        if free <= 0:
            return 0
        claim_s = self._settings.alert_delivery_timeout_s + 10
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(CLAIM, claim_s, min(BATCH, free))
        for row in rows:
            task = asyncio.create_task(self._deliver(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(rows)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def drain(self) -> None:
        """Wait for the sends in flight (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, row: Any) -> None:
        channel = Channel(
            row["channel_id"], row["name"], row["kind"], row["url"], tuple(row["recipients"]),
            row["secret"],
        )  # fmt: skip
        key = row["idempotency_key"]
        async with self._slots:
            try:
                await send(self._http, self._settings, channel, row["payload"], key)
            except DeliveryError as exc:
                await self._failed(row, channel, str(exc))
                return
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(SENT, row["id"])
            await store.insert_event(
                conn, row["rule_id"], datetime.now(UTC), "notification", to_state="sent",
                detail=f"sent to {channel.kind} channel {channel.name!r} (attempt "
                f"{row['attempts']})", data={"idempotency_key": key, "channel": channel.id},
            )  # fmt: skip
        metrics.ALERT_NOTIFICATIONS.labels(channel.kind, "sent").inc()

    async def _failed(self, row: Any, channel: Channel, reason: str) -> None:
        attempts = row["attempts"]
        final = attempts >= self._settings.alert_delivery_attempts
        outcome = "failed" if final else "retry"
        async with self._pool.acquire() as conn, conn.transaction():
            if final:
                await conn.execute(FAILED, row["id"], reason)
            else:
                await conn.execute(RETRY, row["id"], backoff_s(attempts), reason)
            await store.insert_event(
                conn, row["rule_id"], datetime.now(UTC), "notification", to_state=outcome,
                detail=f"{channel.kind} channel {channel.name!r}, attempt {attempts}: {reason}"
                + ("; giving up" if final else "; will retry"),
                data={"idempotency_key": row["idempotency_key"], "channel": channel.id},
            )  # fmt: skip
        metrics.ALERT_NOTIFICATIONS.labels(channel.kind, outcome).inc()
        log.warning(
            "alert_delivery_failed", channel=channel.name, attempt=attempts, reason=reason,
            final=final,
        )  # fmt: skip

    async def prune(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(PRUNE_NOTIFICATIONS, KEEP_DAYS)
            await conn.execute(PRUNE_EVENTS, self._settings.retention_days)

"""Alerting in a process: the scheduler (leases and evaluations) and the outbox delivery,
as two tasks started by the API's lifespan or by `logkeep alerts`."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from logkeep.alerting.delivery import Delivery
from logkeep.alerting.evaluator import Evaluator, EvaluatorConfig
from logkeep.alerting.scheduler import Scheduler, process_identity
from logkeep.config import Settings
from logkeep.db.database import Database


def evaluator_config(settings: Settings, identity: str) -> EvaluatorConfig:
    return EvaluatorConfig(
        public_url=settings.public_url,
        samples=settings.alert_samples,
        retention=timedelta(days=settings.retention_days),
        identity=identity,
    )


class AlertingService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.identity = process_identity()
        self.evaluator = Evaluator(db.pool, evaluator_config(settings, self.identity))
        self.scheduler = Scheduler(
            db.pool,
            db.redis,
            db.keys,
            self.evaluator,
            identity=self.identity,
            settle=timedelta(seconds=settings.alert_settle_s),
            lease_s=settings.alert_lease_s,
            concurrency=settings.alert_concurrency,
            max_catchup=settings.alert_max_catchup_ticks,
        )
        self.delivery = Delivery(db.pool, settings)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="alert-scheduler"),
            asyncio.create_task(self.delivery.run(), name="alert-delivery"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def wait(self) -> None:
        """Run until cancelled (`logkeep alerts`)."""
        await asyncio.gather(*self._tasks)

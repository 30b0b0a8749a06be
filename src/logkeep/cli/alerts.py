"""`logkeep alerts`: rule evaluation and notification delivery alone, without the API
(several may run beside API processes: leases give each rule one evaluator)."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from logkeep.cli.common import load_settings, require_stores, run_async
from logkeep.db.database import Database
from logkeep.ingest.runner import stop_event_on_signals
from logkeep.logging import configure_logging


async def _run() -> None:
    from logkeep.alerting.service import AlertingService

    settings = require_stores(load_settings())
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.http_host)
    async with Database(settings) as db:
        service = AlertingService(db, settings)
        stop = asyncio.Event()
        with stop_event_on_signals(stop):
            service.start()
            try:
                await stop.wait()
            finally:
                await service.close()


def alerts() -> None:
    """Evaluate alert rules and send their notifications (without serving the API)."""
    configure_logging(load_settings().log_level)
    run_async(_run())

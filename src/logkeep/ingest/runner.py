"""The ingest worker and the syslog and GELF receivers as tasks of one process
(`logkeep up`, `logkeep worker`, `logkeep syslog`, `logkeep gelf`), with an orderly stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import structlog
from prometheus_client import start_http_server

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.queries import q
from logkeep.domain.ingest import SourceRules
from logkeep.ingest.first_use import SourcesOnFirstUse
from logkeep.ingest.gelf_server import GelfReceiver
from logkeep.ingest.service import IngestService, ingest_service
from logkeep.ingest.syslog_server import SyslogReceiver
from logkeep.ingest.worker import Worker, consumer_name

log = structlog.get_logger(__name__)

STOP_GRACE_S = 30.0


class SyslogUnavailable(RuntimeError):
    """The syslog port could not be bound; the message says which and why."""


class GelfUnavailable(RuntimeError):
    """The GELF port could not be bound; the message says which and why."""


async def syslog_source(db: Database, service: IngestService, name: str) -> SourceRules:
    """The source syslog messages are stored under, created on first use."""
    async with db.pool.acquire() as conn:
        await conn.execute(
            q("upsert_source"),
            name,
            "messages received by the syslog receiver",
            "syslog",
            "syslog",
            {},
            {},
        )
    return await service.active_source(name)


class IngestTasks:
    """Started worker and receiver; `close` lets the worker finish its batch and the
    receiver flush what it holds."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.workers: list[Worker] = []
        self.receiver: SyslogReceiver | None = None
        self.gelf: GelfReceiver | None = None
        self._service: IngestService | None = None
        self._worker_tasks: list[asyncio.Task[None]] = []

    async def start(
        self,
        db: Database,
        settings: Settings,
        *,
        worker: bool,
        syslog_port: int | None,
        syslog_optional: bool = False,
        gelf_port: int | None = None,
    ) -> None:
        """Start what is asked for. With `syslog_optional` (`logkeep up`), a syslog or
        GELF port already in use is a warning rather than the end of everything."""
        if worker:
            name = consumer_name()
            self.workers = [
                Worker(db, settings, name=f"{name}-{i}") for i in range(settings.worker_concurrency)
            ]
            self._worker_tasks = [asyncio.create_task(w.run(self.stop)) for w in self.workers]
        if syslog_port is not None:
            self._service = ingest_service(db, settings)
            source = await syslog_source(db, self._service, settings.syslog_source)
            self.receiver = SyslogReceiver(self._service, source)
            try:
                await self.receiver.start(settings.syslog_host, syslog_port)
            except OSError as exc:
                self.receiver = None
                if not syslog_optional:
                    raise SyslogUnavailable(
                        f"cannot listen for syslog on {settings.syslog_host}:{syslog_port}: "
                        f"{exc.strerror} (set LOGKEEP_SYSLOG_PORT or --port)"
                    ) from exc
                log.warning(
                    "syslog_not_started",
                    host=settings.syslog_host,
                    port=syslog_port,
                    error=exc.strerror,
                    hint="set LOGKEEP_SYSLOG_PORT to a free port",
                )
        if gelf_port is not None:
            await self._start_gelf(db, settings, gelf_port, optional=syslog_optional)

    async def _start_gelf(
        self, db: Database, settings: Settings, port: int, *, optional: bool
    ) -> None:
        if self._service is None:
            self._service = ingest_service(db, settings)
        first_use = SourcesOnFirstUse(self._service, db.pool, settings.first_use)
        self.gelf = GelfReceiver(self._service, first_use, settings)
        try:
            await self.gelf.start(settings.gelf_host, port)
        except OSError as exc:
            self.gelf = None
            if not optional:
                raise GelfUnavailable(
                    f"cannot listen for GELF on {settings.gelf_host}:{port}: "
                    f"{exc.strerror} (set LOGKEEP_GELF_PORT or --port)"
                ) from exc
            log.warning(
                "gelf_not_started",
                host=settings.gelf_host,
                port=port,
                error=exc.strerror,
                hint="set LOGKEEP_GELF_PORT to a free port",
            )

    async def wait(self) -> None:
        """Until a stop is requested; a worker loop that ended by itself (it should
        not) ends the wait too, so the process exits instead of idling."""
        stopped = asyncio.create_task(self.stop.wait())
        await asyncio.wait([stopped, *self._worker_tasks], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        for task in self._worker_tasks:
            if task.done() and not self.stop.is_set():
                log.error("worker_loop_ended", error=str(task.exception()))
                raise RuntimeError("an ingest worker loop ended unexpectedly")

    async def close(self) -> None:
        self.stop.set()
        if self.receiver is not None:
            await self.receiver.stop()
        if self.gelf is not None:
            await self.gelf.stop()
        if self._service is not None:
            await self._service.close()
        if self._worker_tasks:
            _, late = await asyncio.wait(self._worker_tasks, timeout=STOP_GRACE_S)
            if late:
                log.error("worker_stop_timed_out", loops=len(late))


@contextlib.contextmanager
def stop_event_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (the worker then finishes its batch and exits)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run_ingest_tasks(
    settings: Settings, *, worker: bool, syslog_port: int | None, gelf_port: int | None = None
) -> None:
    """`logkeep worker` / `logkeep syslog` / `logkeep gelf`: run until SIGINT or SIGTERM."""
    if settings.metrics_port:
        # Batch sizes, COPY durations and lag live in this process: serve them.
        start_http_server(settings.metrics_port, addr=settings.http_host)
    async with Database(settings) as db:
        tasks = IngestTasks()
        with stop_event_on_signals(tasks.stop):
            try:
                await tasks.start(
                    db, settings, worker=worker, syslog_port=syslog_port, gelf_port=gelf_port
                )
                await tasks.wait()
            finally:
                await tasks.close()

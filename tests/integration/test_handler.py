"""LogkeepHandler in a real application process against a real logkeep: a restart of the
API, answers lost on the way back, and refusals."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn

from logkeep.api.app import create_app
from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.ingest.worker import Worker
from tests.conftest import running_app
from tests.integration.test_auth import create_key, login
from tests.integration.test_cli import clean_env

# Every test here runs an application process and a real HTTP server.
pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("handler_app.py")
START_DEADLINE_S = 10.0


class Api:
    """logkeep's API on one fixed port, stopped and started again on the same port."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.settings),
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
            )
        )
        task = asyncio.create_task(server.serve())
        deadline = time.monotonic() + START_DEADLINE_S
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                server.should_exit = True
                await task
                raise RuntimeError(f"the API did not start on port {self.port}")
            await asyncio.sleep(0.02)
        self._server, self._task = server, task

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task
        self._server = self._task = None


@contextlib.asynccontextmanager
async def api_on_a_port(settings: Settings) -> AsyncIterator[Api]:
    api = Api(settings, free_port())
    await api.start()
    try:
        yield api
    finally:
        if api._server is not None:
            await api.stop()


class App:
    """tests/integration/handler_app.py as a separate process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, source: str, run: str, **env: str) -> App:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(APP), source, run,
            env=clean_env(LOGKEEP_API_URL=url, **env),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def send(self, command: str, deadline_s: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), deadline_s)
        assert line, f"the app ended: {await self.stderr()}"
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    async def exit(self, deadline_s: float = 60) -> tuple[int, str]:
        """Leave through the normal interpreter exit; the exit code and stderr."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"exit\n")
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        code = await asyncio.wait_for(self.proc.wait(), deadline_s)
        return code, await self.stderr()

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")


async def entries_of_run(db: Database, run: str) -> list[dict[str, Any]]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT timestamp, level, message, metadata FROM log_entries"
            " WHERE metadata->>'run' = $1",
            run,
        )
    return [
        {**dict(row), "metadata": orjson.loads(row["metadata"])}
        if isinstance(row["metadata"], str)
        else dict(row)
        for row in rows
    ]


async def test_records_logged_while_logkeep_restarts_arrive_once_each(
    settings: Settings, db: Database
) -> None:
    run = uuid.uuid4().hex
    started = datetime.now(UTC)
    async with api_on_a_port(settings) as api:
        app = await App.start(f"http://127.0.0.1:{api.port}", "app_errors", run)
        await app.send("log 200")
        await app.send("exception")  # seq 201
        answer = await app.send("flush 30")
        assert answer["delivered"] and answer["accepted"] == 201 and answer["queued"] == 0

        await api.stop()
        down = await app.send("log 10000")
        # Nothing could be sent and nothing was dropped: every call only queued its record,
        # and 10,000 of them took far less than any network wait would.
        assert down["queued"] == 10_000 and down["dropped"] == 0, down
        assert down["seconds"] < 2.0, down
        await app.send("exception")  # seq 10202, while logkeep is down
        await asyncio.sleep(1.5)  # the handler retries against the closed port meanwhile

        await api.start()
        await app.send("log 300")
        answer = await app.send("flush 60")
        assert answer["delivered"] and answer["queued"] == 0, answer
        code, stderr = await app.exit()
    assert code == 0, stderr
    assert "cannot reach logkeep" in stderr  # the outage was reported, on stderr, once
    assert stderr.count("cannot reach logkeep") == 1, stderr
    assert answer["accepted"] + answer["duplicates"] == 10_502

    await Worker(db, settings, name="handler").drain()
    entries = await entries_of_run(db, run)
    sequence = sorted(int(e["metadata"]["seq"]) for e in entries)
    assert sequence == list(range(1, 10_503))  # every record, each exactly once

    # A traceback is one entry: message and exception text, its type and where it was.
    failures = [e for e in entries if e["metadata"]["seq"] in (201, 10_202)]
    assert len(failures) == 2
    for failure in failures:
        message = failure["message"]
        assert message.startswith(f"payment {failure['metadata']['seq']} failed\nTraceback")
        assert "KeyError: 'card'" in message
        assert "The above exception was the direct cause" in message
        assert message.rstrip().endswith("ValueError: card declined")
        assert failure["level"] == "ERROR"
        meta = failure["metadata"]
        assert meta["exception_type"] == "ValueError"
        assert meta["logger"] == "shop.payments"
        assert meta["module"] == "handler_app" and meta["function"] == "main"
        assert isinstance(meta["line"], int) and meta["thread"] == "MainThread"
        assert meta["process"] == app.proc.pid
    assert not [e for e in entries if e["message"].lstrip().startswith(("Traceback", "File "))]
    # The records' own times, not the delivery's: the 10,000 logged while down keep theirs.
    times = [e["timestamp"] for e in entries]
    assert started - timedelta(seconds=1) <= min(times) <= max(times) <= datetime.now(UTC)
    assert {e["level"] for e in entries} == {"INFO", "ERROR"}
    async with db.pool.acquire() as conn:
        own = await conn.fetchval(
            "SELECT count(*) FROM log_entries WHERE metadata->>'logger' LIKE 'http%'"
        )
    assert own == 0  # the sending thread's own httpx records were not fed back


async def drop_first_answers(
    upstream_port: int, answers_to_drop: int
) -> tuple[asyncio.Server, list[int]]:
    """A TCP relay to the API that forwards requests but cuts the connection instead of
    passing back the first `answers_to_drop` answers (a network losing them)."""
    dropped = [0]

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        lossy = dropped[0] < answers_to_drop

        async def forward() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()

        pump = asyncio.create_task(forward())
        try:
            while data := await up_reader.read(65536):
                if lossy:
                    dropped[0] += 1
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    return server, dropped


async def test_a_batch_whose_answer_was_lost_is_stored_once(
    settings: Settings, db: Database
) -> None:
    run = uuid.uuid4().hex
    async with api_on_a_port(settings) as api:
        relay, dropped = await drop_first_answers(api.port, 2)
        port = relay.sockets[0].getsockname()[1]
        async with relay:
            app = await App.start(f"http://127.0.0.1:{port}", "app_errors", run)
            await app.send("log 50")
            answer = await app.send("flush 30")
            code, stderr = await app.exit()
    assert code == 0, stderr
    assert dropped[0] == 2  # two answers never reached the application
    assert answer["delivered"], answer
    # The retries carried the batch's Idempotency-Key: logkeep answered them as replays.
    assert answer["duplicates"] >= 1 and answer["accepted"] + answer["duplicates"] == 50, answer
    await Worker(db, settings, name="handler").drain()
    entries = await entries_of_run(db, run)
    assert sorted(int(e["metadata"]["seq"]) for e in entries) == list(range(1, 51))


async def test_refusals_are_reported_once_and_a_token_from_the_environment_is_used(
    settings: Settings, db: Database
) -> None:
    secured = settings.model_copy(update={"auth_required": True})
    async with running_app(secured) as admin_api:
        admin = await login(admin_api, "admin")
        source_id = await db.pool.fetchval("SELECT id FROM log_sources WHERE name = 'app_errors'")
        key = (await create_key(admin_api, admin, ["ingest"], sources=[source_id]))["key"]
    refused_run, keyed_run, ungranted_run = (uuid.uuid4().hex for _ in range(3))
    async with api_on_a_port(secured) as api:
        url = f"http://127.0.0.1:{api.port}"
        anonymous = await App.start(url, "app_errors", refused_run)
        for _ in range(3):  # three batches, each refused with 401
            answer = await anonymous.send("log 5")
            answer = await anonymous.send("flush 30")
        assert answer["delivered"] and answer["rejected"] == 15 and answer["accepted"] == 0
        code, stderr = await anonymous.exit()
        assert code == 0
        # Said once on stderr (not through logging, which would feed the handler itself).
        assert stderr.count("logkeep.handler: logkeep refused 5 records with 401") == 1, stderr

        keyed = await App.start(url, "app_errors", keyed_run, LOGKEEP_API_TOKEN=key)
        await keyed.send("log 7")
        answer = await keyed.send("flush 30")
        assert answer["accepted"] == 7, answer
        assert (await keyed.exit())[0] == 0

        ungranted = await App.start(url, "nginx_access", ungranted_run, LOGKEEP_API_TOKEN=key)
        await ungranted.send("log 4")
        answer = await ungranted.send("flush 30")
        assert answer["rejected"] == 4 and answer["accepted"] == 0, answer
        code, stderr = await ungranted.exit()
        assert "logkeep rejected 4 of 4 records" in stderr and "not granted" in stderr, stderr
    await Worker(db, secured, name="handler").drain()
    assert len(await entries_of_run(db, keyed_run)) == 7
    assert await entries_of_run(db, refused_run) == []
    assert await entries_of_run(db, ungranted_run) == []


async def test_with_logkeep_away_the_application_exits_within_its_bound() -> None:
    """logkeep never started: the application logs all the same, and its exit waits for
    logkeep once (the flush timeout), not again in close, and reports what was lost."""
    url = f"http://127.0.0.1:{free_port()}"
    app = await App.start(url, "app_errors", "none", APP_EXIT_WAIT_S="2")
    answer = await app.send("log 1000")
    assert answer["queued"] == 1000 and answer["dropped"] == 0
    started = time.monotonic()
    code, stderr = await app.exit()
    waited = time.monotonic() - started
    assert code == 0
    assert 2 <= waited < 10, waited  # flush's 2 s, and close did not add its own 2 s
    assert "1000 records not delivered" in stderr, stderr

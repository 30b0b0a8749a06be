"""Elasticsearch bulk from the real clients: the `elasticsearch` Python client's
helpers.bulk (one bad document among good ones; the same ids twice), and Debian's
syslog-ng with its elasticsearch-http() destination."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.database import Database
from logkeep.domain.protocols import elastic
from tests.integration.shippers import SYSLOG_NG_DIR, shipper_stack, wait_rows


async def ingest_key(db: Database) -> str:
    key = await AccessRepository(db.pool).create_key("es-shipper", ["ingest"], all_sources=True)
    return key.token


def bulk(client: Elasticsearch, actions: list[dict[str, Any]]) -> tuple[int, list[Any]]:
    ok, errors = helpers.bulk(client, actions, raise_on_error=False, raise_on_exception=False)
    return ok, list(errors) if isinstance(errors, list) else []


async def test_python_client_bulk_one_bad_document_and_ids_twice(settings: Settings) -> None:
    tag = uuid.uuid4().hex
    now = time.time()
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    async with shipper_stack(settings.model_copy(update={"auth_required": True})) as stack:
        token = await ingest_key(stack.db)
        client = Elasticsearch(f"{stack.url}/es", api_key=("es-shipper", token))
        try:
            info = await asyncio.to_thread(client.info)
            assert info["version"]["number"] == elastic.VERSION
            actions: list[dict[str, Any]] = [
                {
                    "_op_type": "create",
                    "_index": "payments",
                    "_id": f"{tag}-{i}",
                    "_source": {
                        "@timestamp": f"{second}.{i:03d}Z",
                        "message": f"payment {i} {tag}",
                        "log": {"level": "warning" if i == 2 else "info"},
                        "order": {"id": i, "total": 9.5},
                    },
                }
                for i in range(4)
            ]
            # One bad document among them: a timestamp decades ago.
            actions[1]["_source"]["@timestamp"] = "1990-01-01T00:00:00Z"
            ok, errors = await asyncio.to_thread(bulk, client, actions)
            assert ok == 3
            assert len(errors) == 1
            refused = errors[0]["create"]
            assert refused["status"] == 400
            assert refused["_id"] == f"{tag}-1"
            assert "timestamp" in refused["error"]["reason"]
            stored = await wait_rows(stack.db, tag, 3)
            # The same ids again (a shipper's retry): 409 each, as Elasticsearch answers.
            ok_again, again = await asyncio.to_thread(bulk, client, actions[2:])
            assert ok_again == 0
            assert [e["create"]["status"] for e in again] == [409, 409]
            assert len(await wait_rows(stack.db, tag, 4, deadline_s=1)) == 3
        finally:
            client.close()
    assert [r["message"] for r in stored] == [f"payment {i} {tag}" for i in (0, 2, 3)]
    assert {r["source"] for r in stored} == {"payments"}
    assert [r["level"] for r in stored] == ["INFO", "WARN", "INFO"]
    assert stored[0]["metadata"]["order"] == {"id": 0, "total": 9.5}
    assert stored[0]["metadata"]["_index"] == "payments"
    assert abs(stored[0]["timestamp"].timestamp() - int(now)) < 1


# -- syslog-ng ---------------------------------------------------------------------------


def syslog_ng() -> tuple[Path, dict[str, str]]:
    binary = SYSLOG_NG_DIR / "usr/sbin/syslog-ng"
    if not binary.exists():
        pytest.skip(f"needs Debian's syslog-ng unpacked in {SYSLOG_NG_DIR} (scripts/test does)")
    if shutil.which("logger") is None:
        pytest.skip("needs util-linux logger")
    libs = [SYSLOG_NG_DIR / p for p in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")]
    libs.append(SYSLOG_NG_DIR / "usr/lib/syslog-ng")
    return binary, {"LD_LIBRARY_PATH": ":".join(map(str, libs))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def running_syslog_ng(tmp: Path, api_url: str, api_key: str) -> AsyncIterator[int]:
    """syslog-ng reading TCP syslog on a port and writing to logkeep's /_bulk; yields
    the port once it listens."""
    binary, env = syslog_ng()
    port = free_port()
    scl = SYSLOG_NG_DIR / "usr/share/syslog-ng/include/scl/elasticsearch/elastic-http.conf"
    credentials = base64.b64encode(f"syslog-ng:{api_key}".encode()).decode()
    # docs/shippers.md shows this destination; the test uses it as written there.
    (tmp / "syslog-ng.conf").write_text(
        f"""@version: 3.38
@include "{scl}"
options {{ stats_freq(0); }};
source s_in {{ network(ip(127.0.0.1) port({port}) transport(tcp) flags(syslog-protocol)); }};
destination d_logkeep {{
    elasticsearch-http(
        url("{api_url}/_bulk")
        index("syslog-ng-hosts")
        type("")
        headers("Content-Type: application/x-ndjson" "Authorization: ApiKey {credentials}")
        batch_lines(100)
        timeout(10)
    );
}};
log {{ source(s_in); destination(d_logkeep); }};
"""
    )
    modules = SYSLOG_NG_DIR / "usr/lib/syslog-ng/3.38"
    proc = await asyncio.create_subprocess_exec(
        str(binary), "-F", "--no-caps", "-f", str(tmp / "syslog-ng.conf"),
        f"--module-path={modules}", "-R", str(tmp / "persist"), "-p", str(tmp / "pid"),
        "-c", str(tmp / "ctl"),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    out = await proc.stdout.read() if proc.stdout else b""
                    raise RuntimeError(f"syslog-ng did not start: {out.decode()[-2000:]}") from None
                await asyncio.sleep(0.1)
        yield port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)


@pytest.mark.slow  # a Node.js or syslog-ng subprocess
async def test_syslog_ng_elasticsearch_http_destination(settings: Settings, tmp_path: Path) -> None:
    syslog_ng()
    tag = uuid.uuid4().hex
    async with shipper_stack(settings.model_copy(update={"auth_required": True})) as stack:
        token = await ingest_key(stack.db)
        async with running_syslog_ng(tmp_path, stack.url, token) as port:
            for priority, text in (("local0.err", "disk full"), ("auth.info", "login ok")):
                proc = await asyncio.create_subprocess_exec(
                    "logger", "--server", "127.0.0.1", "--port", str(port), "--tcp",
                    "--rfc5424", "-t", "myapp", "-p", priority, f"{text} {tag}",
                )  # fmt: skip
                assert await proc.wait() == 0
            stored = await wait_rows(stack.db, tag, 2)
    assert len(stored) == 2
    by_text = {r["message"].rsplit(" ", 1)[0]: r for r in stored}
    full, login = by_text["disk full"], by_text["login ok"]
    assert {r["source"] for r in stored} == {"syslog-ng-hosts"}
    assert (full["level"], login["level"]) == ("ERROR", "INFO")
    assert full["message"] == f"disk full {tag}"
    assert full["metadata"]["PROGRAM"] == "myapp"
    assert full["metadata"]["FACILITY"] == "local0"
    assert full["metadata"]["HOST"]

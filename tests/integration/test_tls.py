"""HTTPS, both ways logkeep runs it, and HSTS only where HTTPS is true.

- Served by logkeep itself: LOGKEEP_TLS_CERT_FILE / LOGKEEP_TLS_KEY_FILE, checked at
  start-up, handed to uvicorn by `logkeep serve` and `logkeep up`.
- Behind a proxy: LOGKEEP_TRUSTED_PROXIES decides whose `X-Forwarded-Proto` is believed;
  the prod profile's proxy (deploy/caddy/Caddyfile) runs here for real when Debian's
  caddy is installed.

Certificates are made by the openssl command for each run; clients trust exactly that
certificate, nothing is verified loosely.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from logkeep.api.app import create_app
from logkeep.api.local import free_port
from logkeep.api.transport import came_over_https
from logkeep.config import Settings, SettingsError
from tests.conftest import Stores
from tests.integration.test_cli import LOGKEEP, clean_env

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
OPENSSL = shutil.which("openssl")
CADDY = shutil.which("caddy")
HSTS = "max-age=31536000"
# Never contacted: an address of TEST-NET-1 (RFC 5737) that no caller here can come from.
SOMEONE_ELSE = "192.0.2.10"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def trusted_by(self) -> ssl.SSLContext:
        """A client context that trusts this certificate and nothing else."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(directory: Path, *, encrypted: bool = False) -> Certificate:
    if OPENSSL is None:
        pytest.skip("openssl is not installed: no certificate can be made for the test")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "tls.crt", directory / "tls.key"
    protection = ["-passout", "pass:a-passphrase"] if encrypted else ["-noenc"]
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         *protection, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Certificate(cert, key)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def tls_settings(cert: Path | None, key: Path | None) -> Settings:
    # An explicit port: the URL is then never a running `logkeep up`'s.
    return Settings(_env_file=None, tls_cert_file=cert, tls_key_file=key, http_port=8000)


# ---------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize("given", ["cert", "key"])
def test_certificate_and_key_go_together(certificate: Certificate, given: str) -> None:
    cert, key = (certificate.cert, None) if given == "cert" else (None, certificate.key)
    with pytest.raises(ValidationError) as raised:
        tls_settings(cert, key)
    message = str(raised.value)
    assert "LOGKEEP_TLS_CERT_FILE and LOGKEEP_TLS_KEY_FILE go together" in message
    assert f"only LOGKEEP_TLS_{given.upper()}_FILE is set" in message


def test_readable_matching_files_pass_the_start_up_check(certificate: Certificate) -> None:
    settings = tls_settings(certificate.cert, certificate.key)
    settings.check_for_startup()
    assert settings.resolved_api_url == "https://127.0.0.1:8000"
    assert tls_settings(None, None).resolved_api_url == "http://127.0.0.1:8000"


def test_unreadable_or_mismatched_files_are_refused_naming_the_setting(
    certificate: Certificate, tmp_path: Path
) -> None:
    other = make_certificate(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\n\x00\xff not base64\n")
    encrypted = make_certificate(tmp_path / "encrypted", encrypted=True)
    cases = [
        (tmp_path / "nope.crt", certificate.key, r"TLS_CERT_FILE: cannot read .*nope\.crt"),
        (certificate.cert, tmp_path, r"LOGKEEP_TLS_KEY_FILE: cannot read .*: Is a directory"),
        (certificate.cert, other.key, r"are not a PEM certificate and its private key"),
        (garbage, certificate.key, r"are not a PEM certificate and its private key"),
        # Refused, not a passphrase prompt on the server's terminal.
        (encrypted.cert, encrypted.key, r"are not a PEM certificate and its private key"),
    ]  # fmt: skip
    for cert, key, expected in cases:
        settings = tls_settings(cert, key)
        with pytest.raises(SettingsError, match=expected):
            settings.check_for_startup()


def test_trusted_proxies_are_addresses_or_networks() -> None:
    accepted = "10.0.0.5, 172.30.80.0/24,::1"
    assert Settings(_env_file=None, trusted_proxies=accepted).trusted_proxies == accepted
    with pytest.raises(ValidationError, match=r"LOGKEEP_TRUSTED_PROXIES: 'proxy\.internal' is not"):
        Settings(_env_file=None, trusted_proxies="10.0.0.5,proxy.internal")


def test_came_over_https_reads_the_scheme_uvicorn_settled() -> None:
    assert came_over_https({"type": "http", "scheme": "https"})
    assert came_over_https({"type": "websocket", "scheme": "wss"})
    assert not came_over_https({"type": "http", "scheme": "http"})
    assert not came_over_https({"type": "http"})


@pytest.mark.parametrize(
    ("base_url", "hsts"), [("https://logkeep.test", HSTS), ("http://logkeep.test", None)]
)
async def test_hsts_is_sent_over_https_only(
    settings: Settings, base_url: str, hsts: str | None
) -> None:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client,
    ):
        for path in ("/healthz", "/api/v1/logs/recent", "/no-such-route"):
            response = await client.get(path)
            assert response.headers.get("strict-transport-security") == hsts, path


# ---------------------------------------------------------------------------------------
# Real processes: `logkeep serve` / `up`, and Caddy in front


@dataclass
class Running:
    process: asyncio.subprocess.Process
    log: Path

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture
async def start() -> AsyncIterator[Callable[[list[str], dict[str, str], Path], Awaitable[Running]]]:
    """Start a process (its own process group, output to a log), stopped afterwards."""
    started: list[Running] = []

    async def run(argv: list[str], env: dict[str, str], log: Path) -> Running:
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=log.parent, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        started.append(Running(process, log))
        return started[-1]

    try:
        yield run
    finally:
        for running in started:
            if running.process.returncode is None:
                os.killpg(running.process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(running.process.wait(), 30)
                except TimeoutError:
                    os.killpg(running.process.pid, signal.SIGKILL)
                    await running.process.wait()


async def wait_until_answering(
    url: str, running: Running, verify: ssl.SSLContext | bool = True, deadline_s: float = 60
) -> httpx.Response:
    """GET `url` until it answers; a process that exits fails with its log."""
    deadline = time.monotonic() + deadline_s
    async with httpx.AsyncClient(verify=verify, timeout=3) as client:
        while True:
            if running.process.returncode is not None:
                pytest.fail(f"exited with {running.process.returncode}:\n{running.tail()}")
            try:
                return await client.get(url)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{url} did not answer within {deadline_s}s:\n{running.tail()}")
                await asyncio.sleep(0.1)


async def run_to_end(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, deadline_s: float = 60
) -> tuple[int, str]:
    """Run a command to its end: (exit code, stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), deadline_s)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.fixture
def logkeep_env(database_url_fixture: str, stores: Stores, redis_prefix: str) -> dict[str, str]:
    return clean_env(
        LOGKEEP_ENV="test",
        LOGKEEP_AUTH_REQUIRED="false",
        LOGKEEP_DATABASE_URL=database_url_fixture,
        LOGKEEP_REDIS_URL=stores.redis_url,
        LOGKEEP_REDIS_KEY_PREFIX=redis_prefix,
        LOGKEEP_MAINTENANCE_INTERVAL_S="0",
        LOGKEEP_SEED_ROWS="0",
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", [["serve"], ["up", "--no-syslog"]], ids=["serve", "up"])
async def test_logkeep_serves_https_with_its_certificate(
    command: list[str],
    certificate: Certificate,
    logkeep_env: dict[str, str],
    start: Callable[[list[str], dict[str, str], Path], Awaitable[Running]],
    tmp_path: Path,
) -> None:
    port = free_port()
    env = logkeep_env | {
        "LOGKEEP_HTTP_PORT": str(port),
        "LOGKEEP_TLS_CERT_FILE": str(certificate.cert),
        "LOGKEEP_TLS_KEY_FILE": str(certificate.key),
    }
    running = await start([str(LOGKEEP), *command], env, tmp_path / "logkeep.log")
    url = f"https://127.0.0.1:{port}/readyz"
    ready = await wait_until_answering(url, running, verify=certificate.trusted_by())
    assert ready.status_code == 200, ready.text
    assert ready.headers["strict-transport-security"] == HSTS
    # The certificate served is ours: a client with only the usual CAs refuses it...
    async with httpx.AsyncClient(timeout=5) as stranger:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await stranger.get(url)
    # ...and plain HTTP on that port is not served at all.
    async with httpx.AsyncClient(timeout=5) as plain:
        with pytest.raises(httpx.TransportError):
            await plain.get(f"http://127.0.0.1:{port}/readyz")
    curl = shutil.which("curl")
    if curl is not None:  # a second real client, with the same trust
        code, output = await run_to_end(
            [curl, "-sS", "--fail", "-D", "-", "-o", "/dev/null", "--cacert", str(certificate.cert),
             url], tmp_path,
        )  # fmt: skip
        assert code == 0, output
        assert f"strict-transport-security: {HSTS}" in output.lower()


@pytest.mark.slow
async def test_logkeep_refuses_to_start_with_a_certificate_it_cannot_read(
    logkeep_env: dict[str, str], certificate: Certificate, tmp_path: Path
) -> None:
    env = logkeep_env | {
        "LOGKEEP_HTTP_PORT": str(free_port()),
        "LOGKEEP_TLS_CERT_FILE": str(certificate.cert),
        "LOGKEEP_TLS_KEY_FILE": str(tmp_path / "absent.key"),
    }
    code, output = await run_to_end([str(LOGKEEP), "serve"], tmp_path, env)
    assert code == 2, output
    output = " ".join(output.split())  # rich wraps long lines
    assert "LOGKEEP_TLS_KEY_FILE: cannot read" in output
    assert "Traceback" not in output


@pytest.mark.slow
async def test_x_forwarded_proto_is_believed_only_from_a_trusted_proxy(
    logkeep_env: dict[str, str],
    start: Callable[[list[str], dict[str, str], Path], Awaitable[Running]],
    tmp_path: Path,
) -> None:
    """The same request from 127.0.0.1: believed when 127.0.0.1 is the trusted proxy, not
    when only another address is."""
    urls, processes = {}, {}
    for name, trusted in (("trusted", "127.0.0.1"), ("untrusted", SOMEONE_ELSE)):
        port = free_port()
        env = logkeep_env | {"LOGKEEP_HTTP_PORT": str(port), "LOGKEEP_TRUSTED_PROXIES": trusted}
        processes[name] = await start([str(LOGKEEP), "serve"], env, tmp_path / f"{name}.log")
        urls[name] = f"http://127.0.0.1:{port}/readyz"
    # Both start at once; then each must answer.
    for name, running in processes.items():
        assert (await wait_until_answering(urls[name], running)).status_code == 200
    says_https = {"X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(urls["trusted"], headers=says_https)).headers.get(
            "strict-transport-security"
        ) == HSTS
        for url, headers in (
            (urls["trusted"], {}),
            (urls["untrusted"], says_https),
            (urls["untrusted"], {}),
        ):
            response = await client.get(url, headers=headers)
            assert response.status_code == 200
            assert "strict-transport-security" not in response.headers, (url, headers)


@pytest.mark.slow
@pytest.mark.skipif(
    CADDY is None,
    reason="caddy is not installed (apt-get install -y caddy): the proxy was not run",
)
async def test_behind_the_prod_proxy_https_reaches_logkeep_with_hsts(
    certificate: Certificate,
    logkeep_env: dict[str, str],
    start: Callable[[list[str], dict[str, str], Path], Awaitable[Running]],
    tmp_path: Path,
) -> None:
    """deploy/caddy/Caddyfile as compose runs it, with this machine's ports and paths:
    Caddy terminates TLS with our certificate and forwards to `logkeep serve`, which
    trusts Caddy's address as compose's LOGKEEP_TRUSTED_PROXIES does."""
    assert CADDY is not None
    api_port = free_port()
    api_env = logkeep_env | {
        "LOGKEEP_HTTP_PORT": str(api_port),
        "LOGKEEP_TRUSTED_PROXIES": "127.0.0.1",
    }
    api = await start([str(LOGKEEP), "serve"], api_env, tmp_path / "logkeep.log")
    await wait_until_answering(f"http://127.0.0.1:{api_port}/healthz", api)

    https_port, http_port, health_port = free_port(), free_port(), free_port()
    home = tmp_path / "caddy-home"
    caddy_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "LOGKEEP_DOMAIN": "localhost",
        "LOGKEEP_PROXY_TLS": "files",
        "LOGKEEP_PROXY_CERT_FILE": str(certificate.cert),
        "LOGKEEP_PROXY_KEY_FILE": str(certificate.key),
        "LOGKEEP_UPSTREAM": f"127.0.0.1:{api_port}",
        "LOGKEEP_PROXY_HTTPS_PORT": str(https_port),
        "LOGKEEP_PROXY_HTTP_PORT": str(http_port),
        "LOGKEEP_PROXY_HEALTH_PORT": str(health_port),
    }
    proxy = await start(
        [CADDY, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        caddy_env,
        tmp_path / "caddy.log",
    )
    health = await wait_until_answering(f"http://127.0.0.1:{health_port}/healthz", proxy)
    assert (health.status_code, health.text) == (200, "ok")

    url = f"https://localhost:{https_port}/readyz"
    ready = await wait_until_answering(url, proxy, verify=certificate.trusted_by())
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"  # logkeep answered, through the proxy
    assert ready.headers["strict-transport-security"] == HSTS
    async with httpx.AsyncClient(verify=certificate.trusted_by(), timeout=5) as client:
        # A client's own X-Forwarded-Proto is replaced by the proxy's, never passed on.
        lying = await client.get(url, headers={"X-Forwarded-Proto": "http"})
        assert lying.headers["strict-transport-security"] == HSTS
    async with httpx.AsyncClient(timeout=5) as plain:
        redirect = await plain.get(f"http://localhost:{http_port}/readyz")
        # To the same address over HTTPS on its standard port: compose publishes 443.
        assert redirect.status_code == 308
        assert redirect.headers["location"] == "https://localhost/readyz"

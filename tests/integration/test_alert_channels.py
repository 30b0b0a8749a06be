"""Channels for real: an email through a real SMTP server (aiosmtpd) that requires
STARTTLS and a login; a webhook that fails is retried, counted in /metrics and shown in
the rule's history, without holding back another rule's notification; secrets are never
shown again."""

from __future__ import annotations

import email
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from tests.conftest import make_settings, running_app
from tests.integration.alerting_helpers import (
    add_entries,
    create_channel,
    create_rule,
    deliver,
    minute_base,
    new_source,
    run_ticks,
    webhook_receiver,
)

MINUTE = timedelta(minutes=1)
OPENSSL = shutil.which("openssl")
SMTP_USER, SMTP_PASSWORD = "alerts", "smtp-test-password-1"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (SMTP_USER, SMTP_PASSWORD)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Mailbox, int]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
        authenticator=mailbox.authenticate, auth_required=True,
    )  # fmt: skip
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
async def mail_settings(
    database_url_fixture: str, stores: Any, smtp_server: tuple[Mailbox, int],
    certificate: tuple[Path, Path],
) -> Settings:  # fmt: skip
    return make_settings(
        database_url_fixture, stores.redis_url, alerts_enabled=False,
        public_url="https://logs.example.test", smtp_host="127.0.0.1",
        smtp_port=smtp_server[1], smtp_security="starttls", smtp_username=SMTP_USER,
        smtp_password=SMTP_PASSWORD, smtp_from="logkeep@example.test",
        smtp_ca_file=certificate[0],
    )  # fmt: skip


@pytest.fixture
async def api(mail_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(mail_settings) as client:
        yield client


@pytest.fixture
async def adb(mail_settings: Settings) -> AsyncIterator[Database]:
    async with Database(mail_settings) as database:
        yield database


async def test_email_over_starttls_with_a_login_carries_the_evidence(
    api: httpx.AsyncClient, adb: Database, mail_settings: Settings,
    smtp_server: tuple[Mailbox, int],
) -> None:  # fmt: skip
    mailbox, _port = smtp_server
    source = await new_source(adb, "mailer")
    base = minute_base()
    await add_entries(adb, source, base, 4, "queue stuck at 93%")
    channel = await api.post(
        "/api/v1/alert-channels",
        json={"name": "ops mail", "kind": "email", "to": ["ops@example.test", "b@example.test"]},
    )
    assert channel.status_code == 201, channel.text
    rule = await create_rule(
        api, name="mail errors", source=source, threshold=2, window_seconds=60,
        interval_seconds=60, channels=[channel.json()["id"]],
    )  # fmt: skip
    await run_ticks(adb, mail_settings, rule["id"], [base + MINUTE])
    assert await deliver(adb, mail_settings) == 1
    assert mailbox.logins == [SMTP_USER]
    [(recipients, raw)] = mailbox.messages
    assert recipients == ["ops@example.test", "b@example.test"]
    message = email.message_from_bytes(raw)
    assert message["Subject"] == "[logkeep] mail errors: FIRING x1"
    assert message["Message-ID"].startswith(f"<lk-r{rule['id']}-t")
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    assert "value 4 >= threshold 2" in body
    assert "queue stuck at 93%" in body
    assert "https://logs.example.test/?q=" not in body  # no words: the link has none
    assert "https://logs.example.test/?min_level=ERROR&source=mailer&from=" in body


async def test_a_failing_channel_is_retried_counted_and_shown_and_blocks_nothing(
    api: httpx.AsyncClient, adb: Database, mail_settings: Settings
) -> None:
    source = await new_source(adb, "flaky")
    base = minute_base()
    await add_entries(adb, source, base, 3)
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    async with webhook_receiver() as receiver:
        receiver.fail_next = 1
        good = await create_channel(api, receiver.url, "good")
        broken = await create_channel(api, dead, "refused")
        failing = await create_rule(
            api, name="to the refused", source=source, threshold=1, window_seconds=60,
            interval_seconds=60, channels=[broken],
        )  # fmt: skip
        flaky = await create_rule(
            api, name="to the flaky", source=source, threshold=1, window_seconds=60,
            interval_seconds=60, channels=[good],
        )  # fmt: skip
        for rule in (failing, flaky):
            await run_ticks(adb, mail_settings, rule["id"], [base + MINUTE])
        assert await deliver(adb, mail_settings) == 2  # both tried, both failed
        async with adb.pool.acquire() as conn:  # skip the backoff
            await conn.execute("UPDATE alert_notifications SET next_attempt_at = now()")
        assert await deliver(adb, mail_settings) == 2
    assert len(receiver.received) == 1  # the 500 was retried: delivered once, after it
    history = (await api.get(f"/api/v1/alert-rules/{flaky['id']}/history")).json()["events"]
    notes = [e["detail"] for e in history if e["kind"] == "notification"]
    assert notes[0].startswith("sent to webhook channel 'good' (attempt 2)")
    assert "attempt 1: HTTP 500 Internal Server Error; will retry" in notes[1]
    history = (await api.get(f"/api/v1/alert-rules/{failing['id']}/history")).json()["events"]
    refused = [e["detail"] for e in history if e["to_state"] == "retry"]
    assert len(refused) == 2 and all("ConnectError" in d for d in refused)
    metrics = (await api.get("/metrics")).text
    retried = [
        line for line in metrics.splitlines()
        if line.startswith('logkeep_alert_notifications_total{channel="webhook",outcome="retry"}')
    ]  # fmt: skip
    assert retried and float(retried[0].split()[-1]) >= 3


async def test_secrets_are_never_shown_again(api: httpx.AsyncClient) -> None:
    secret_url = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
    slack = await api.post(
        "/api/v1/alert-channels", json={"name": "chat", "kind": "slack", "url": secret_url}
    )
    assert slack.status_code == 201, slack.text
    hook = await api.post(
        "/api/v1/alert-channels",
        json={"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/x",
              "secret": "s3cret-value-long-enough"},
    )  # fmt: skip
    assert hook.status_code == 201
    listed = await api.get("/api/v1/alert-channels")
    for text in (slack.text, hook.text, listed.text):
        assert "XXXXSECRETXXXX" not in text and "s3cret-value" not in text
    assert {c["name"]: c["has_secret"] for c in listed.json()} == {"chat": False, "hook": True}
    weak = await api.post(
        "/api/v1/alert-channels",
        json={"name": "weak", "kind": "webhook", "url": "http://127.0.0.1:9/x", "secret": "x"},
    )
    assert weak.status_code == 422 and "secret" in weak.json()["detail"]

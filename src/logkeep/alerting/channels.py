"""Sending one notification over one channel: a signed webhook, an email over SMTP, a
Slack or Microsoft Teams incoming webhook. Each raises DeliveryError with a reason the
history can show; nothing here retries (the outbox does)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib
import httpx

from logkeep.config import Settings
from logkeep.domain import alert_messages as messages


class DeliveryError(Exception):
    """A channel did not take the notification; the message says why."""


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    name: str
    kind: str
    url: str
    recipients: tuple[str, ...]
    secret: str


async def _post(
    http: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
) -> None:
    try:
        response = await http.post(url, content=body, headers=dict(headers), timeout=timeout_s)
    except httpx.TimeoutException:
        raise DeliveryError(f"no answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from None
    if response.status_code >= 300:
        raise DeliveryError(f"HTTP {response.status_code} {response.reason_phrase}")


async def send_http(
    http: httpx.AsyncClient,
    channel: Channel,
    payload: Mapping[str, Any],
    key: str,
    timeout_s: float,
) -> None:
    headers = {"Content-Type": "application/json", "Idempotency-Key": key,
               "User-Agent": "logkeep-alerting"}  # fmt: skip
    if channel.kind == "webhook":
        body = messages.webhook_body(payload)
        if channel.secret:
            headers[messages.SIGNATURE_HEADER] = messages.signature(
                channel.secret, int(time.time()), body
            )
    elif channel.kind == "slack":
        body = messages.webhook_body(messages.slack_body(payload))
    else:
        body = messages.webhook_body(messages.teams_body(payload))
    await _post(http, channel.url, body, headers, timeout_s)


def email_message(
    settings: Settings, channel: Channel, payload: Mapping[str, Any], key: str
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = messages.title(payload)
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(channel.recipients)
    message["Date"] = formatdate(localtime=False)
    # The same notification retried carries the same Message-ID: mail systems drop the copy.
    message["Message-ID"] = f"<{key}@logkeep>"
    message["X-Logkeep-Idempotency-Key"] = key
    message.set_content(messages.text(payload))
    return message


async def send_email(
    settings: Settings, channel: Channel, payload: Mapping[str, Any], key: str, timeout_s: float
) -> None:
    if not settings.smtp_host:
        raise DeliveryError("LOGKEEP_SMTP_HOST is not set")
    context = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    )
    password = settings.smtp_password.get_secret_value()
    try:
        await aiosmtplib.send(
            email_message(settings, channel, payload, key),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=password or None,
            use_tls=settings.smtp_security == "tls",
            start_tls=settings.smtp_security == "starttls",
            tls_context=context,
            timeout=timeout_s,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}"[:300]) from None


async def send(
    http: httpx.AsyncClient,
    settings: Settings,
    channel: Channel,
    payload: Mapping[str, Any],
    key: str,
) -> None:
    timeout_s = settings.alert_delivery_timeout_s
    if channel.kind == "email":
        await send_email(settings, channel, payload, key, timeout_s)
    else:
        await send_http(http, channel, payload, key, timeout_s)

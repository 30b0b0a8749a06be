"""Notifications as each channel receives them, and the webhook signature. Pure, no I/O.

The evidence is decided once, when the evaluation commits (the outbox keeps it); this
module only renders it: JSON for webhooks (signed), a text email, a Slack message and a
Microsoft Teams card.

Webhook signature: `X-Logkeep-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the channel's secret>`; the receiver recomputes it and compares in
constant time, and refuses old timestamps (replays). `Idempotency-Key` names the
notification: a retry carries the same key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from logkeep.domain import exactjson
from logkeep.domain.search import rfc3339

SIGNATURE_HEADER = "X-Logkeep-Signature"
MESSAGE_CHARS = 1000  # of each sample entry's message in a notification
STATUS_WORDS = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}


def explorer_link(
    public_url: str,
    pairs: Iterable[tuple[str, str]],
    start: datetime,
    end: datetime,
) -> str:
    """The explorer's address for a search over [start, end), with its URL parameters
    (q, contains, level, min_level, source, metadata.<key>, from, to)."""
    query = [*pairs, ("from", rfc3339(start)), ("to", rfc3339(end))]
    return f"{public_url.rstrip('/')}/?{urlencode(query)}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, now: int, tolerance: int) -> bool:
    """What a receiver does with the header (logkeep's tests use it as a receiver)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return hmac.compare_digest(expected, header)


def webhook_body(payload: Mapping[str, Any]) -> bytes:
    return exactjson.dumps(payload)


def _value(value: Any) -> str:
    if value is None:
        return "no data"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(int(value)) if isinstance(value, float) else str(value)


def _alerts(payload: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    alerts: Sequence[Mapping[str, Any]] = payload.get("alerts", [])
    return alerts


def title(payload: Mapping[str, Any]) -> str:
    rule = payload["rule"]
    counts: dict[str, int] = {}
    for alert in _alerts(payload):
        counts[alert["status"]] = counts.get(alert["status"], 0) + 1
    parts = [f"{STATUS_WORDS.get(s, s.upper())} x{n}" for s, n in sorted(counts.items())]
    return f"[logkeep] {rule['name']}: {', '.join(parts) or 'no change'}"


def alert_lines(alert: Mapping[str, Any]) -> list[str]:
    group = alert.get("group") or "(whole rule)"
    lines = [
        f"{STATUS_WORDS.get(alert['status'], alert['status'])}  {group}",
        f"  value {_value(alert.get('value'))} {alert.get('op', '')} "
        f"threshold {_value(alert.get('threshold'))}"
        + (f" ({alert['reason']})" if alert.get("reason") else ""),
        f"  since {alert.get('since', '')}",
    ]
    if alert.get("template"):
        lines.append(f"  shape: {alert['template']}")
    if alert.get("link"):
        lines.append(f"  search: {alert['link']}")
    for sample in alert.get("samples", []):
        lines.append(
            f"  - {sample.get('timestamp', '')} {sample.get('source', '')} "
            f"{sample.get('level', '')} {str(sample.get('message', ''))[:MESSAGE_CHARS]}"
        )
    return lines


def text(payload: Mapping[str, Any]) -> str:
    rule = payload["rule"]
    head = [
        title(payload),
        f"rule {rule['name']} (#{rule['id']}, {rule['kind']}), evaluated at {payload['at']}",
        "",
    ]
    body: list[str] = []
    for alert in _alerts(payload):
        body.extend(alert_lines(alert))
        body.append("")
    return "\n".join(head + body).rstrip() + "\n"


def slack_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (mrkdwn text; links are not unfurled)."""
    return {"text": text(payload)[:39_000], "unfurl_links": False, "mrkdwn": False}


def teams_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Microsoft Teams incoming-webhook message: an Adaptive Card."""
    blocks: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title(payload), "weight": "Bolder", "wrap": True}
    ]
    for alert in _alerts(payload):
        blocks.append({"type": "TextBlock", "text": "\n\n".join(alert_lines(alert)), "wrap": True})
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": blocks,
                },
            }
        ],
    }

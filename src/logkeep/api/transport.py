"""Whether a request reached logkeep over HTTPS, and what browsers are told when it did.

uvicorn sets the ASGI scope's `scheme`: `https` when it serves TLS itself
(LOGKEEP_TLS_CERT_FILE / LOGKEEP_TLS_KEY_FILE), or, when the request comes from an address
in LOGKEEP_TRUSTED_PROXIES, whatever that proxy's `X-Forwarded-Proto` says. Anyone else's
`X-Forwarded-Proto` is ignored (uvicorn's proxy-headers middleware runs only for trusted
addresses), so a plain-HTTP caller cannot claim HTTPS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# One year, this host only: logkeep's operator decides about subdomains and preloading.
HSTS_HEADER = (b"strict-transport-security", b"max-age=31536000")

SECURE_SCHEMES = frozenset({"https", "wss"})


def came_over_https(scope: Mapping[str, Any]) -> bool:
    """True when this request reached logkeep over TLS, directly or through a trusted proxy.

    Takes an ASGI scope or a Starlette `Request` / `WebSocket` (both are mappings of their
    scope). Use it for anything that must only happen over HTTPS: the HSTS header, a
    session cookie's `Secure` attribute.
    """
    return scope.get("scheme") in SECURE_SCHEMES

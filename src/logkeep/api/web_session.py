"""The browser's session: a cookie instead of the Authorization header, and CSRF checks.

In the browser the session token lives in an HttpOnly, SameSite=Strict cookie (Secure,
and named with the `__Host-` prefix, when the page came over https), so no script can
read it. Cookies are sent by the browser on its own, so every state-changing request that
authenticates with the cookie must prove it comes from the page itself:

1. `Sec-Fetch-Site`, when the browser sends it, must be `same-origin` (or `none`: typed
   by the user); without it, an `Origin` header must name this host.
2. An `X-CSRF-Token` header must hold the session's CSRF token: a SHA-256 of the session
   token under its own label. The page gets it from GET /api/v1/auth/web/session and keeps
   it in memory; another site can neither read it (no CORS) nor send a custom header
   without a preflight this API never grants. It is derived, not stored, so it lives and
   dies with the session, and the digest Redis keeps of the token does not reveal it.

SameSite=Strict already keeps the cookie off cross-site requests in current browsers;
the checks above hold where it does not (older browsers, same-site subdomains).
Requests with an Authorization header never use the cookie.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request, Response

from logkeep.api.transport import came_over_https
from logkeep.domain.auth import SESSION_PREFIX

COOKIE = "logkeep_session"
SECURE_COOKIE = "__Host-logkeep_session"  # needs Secure, Path=/ and no Domain
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_TOKEN_CHARS = 200


def csrf_token(session_token: str) -> str:
    return hashlib.sha256(b"logkeep-csrf\x00" + session_token.encode("utf-8")).hexdigest()


def cookie_token(request: Request) -> str | None:
    """The session token the request's cookie carries, if it looks like one."""
    token = request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)
    if not token or len(token) > MAX_TOKEN_CHARS or not token.startswith(SESSION_PREFIX):
        return None
    return token


def _refuse(detail: str) -> HTTPException:
    return HTTPException(403, detail)


def check_origin(request: Request) -> None:
    """403 unless the request comes from a page of this origin (see the module's doc)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise _refuse(f"cross-site request refused (Sec-Fetch-Site: {site[:20]})")
        return
    origin = request.headers.get("origin")
    if origin is not None:
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise _refuse("cross-origin request refused (Origin does not match this host)")


def check_csrf(request: Request, session_token: str) -> None:
    """For a request authenticated by the cookie: nothing for safe methods; otherwise
    the origin checks and the CSRF token, or 403."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode("utf-8", "replace"), csrf_token(session_token).encode()):
        raise _refuse(
            "CSRF token missing or wrong: send the X-CSRF-Token header that "
            "GET /api/v1/auth/web/session returns"
        )


def session_from_cookie(request: Request) -> str | None:
    """The session token of a cookie-authenticated request, after its CSRF checks."""
    token = cookie_token(request)
    if token is not None:
        check_csrf(request, token)
    return token


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    secure = came_over_https(request)
    response.set_cookie(
        SECURE_COOKIE if secure else COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response) -> None:
    for name, secure in ((COOKIE, False), (SECURE_COOKIE, True)):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")

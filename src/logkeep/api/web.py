"""The web explorer: its page at `/`, its static assets, and the browser's sign-in.

Assets are read from the package (src/logkeep/web/) once per process and served under
`/static/<build>/...`, where <build> is a digest of all of them: the URLs change whenever
any file does, so they can be cached for a year. The page itself is never cached and names
the current build. Text assets are gzipped once, here, and sent so when the browser
accepts it. The page gets its own Content-Security-Policy: scripts, styles and connections
to this origin only, no inline code, no eval.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from logkeep.api import auth
from logkeep.api.auth import LoginRequest, authenticate, client_address, get_access, get_sessions
from logkeep.api.deps import get_settings
from logkeep.api.problems import answers
from logkeep.api.web_session import (
    check_csrf,
    check_origin,
    clear_session_cookie,
    cookie_token,
    csrf_token,
    set_session_cookie,
)
from logkeep.config import Settings
from logkeep.db.access import AccessRepository

router = APIRouter(include_in_schema=False)
session_router = APIRouter(prefix="/api/v1/auth/web", tags=["auth"])

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSIBLE = (".js", ".css", ".html", ".svg", ".json", ".LICENSE")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str


@dataclass(frozen=True, slots=True)
class Bundle:
    build: str
    page: bytes
    page_gzipped: bytes
    assets: dict[str, Asset]


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for child in sorted(folder.iterdir(), key=lambda c: c.name):
        if child.name.startswith((".", "__")):
            continue
        if child.is_dir():
            files.update(_walk(child, f"{prefix}{child.name}/"))
        else:
            files[prefix + child.name] = child.read_bytes()
    return files


def _media_type(name: str) -> str:
    for suffix, media in TYPES.items():
        if name.endswith(suffix):
            return media
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


@cache
def bundle() -> Bundle:
    """The page and its assets, read and compressed once per process."""
    files = _walk(resources.files("logkeep").joinpath("web"))
    page_template = files.pop("index.html")
    digest = hashlib.sha256()
    for name, body in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    build = digest.hexdigest()[:12]
    assets = {
        name: Asset(
            body,
            gzip.compress(body, 9, mtime=0) if name.endswith(COMPRESSIBLE) else None,
            _media_type(name),
        )
        for name, body in files.items()
    }
    page = page_template.replace(b"{{build}}", build.encode())
    return Bundle(build, page, gzip.compress(page, 9, mtime=0), assets)


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def _send(
    request: Request, body: bytes, gzipped: bytes | None, headers: dict[str, str]
) -> Response:
    headers = {**headers, "Vary": "Accept-Encoding"}
    if gzipped is not None and len(gzipped) < len(body) and _accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        body = gzipped
    return Response(body, headers=headers, media_type=headers.pop("Content-Type"))


@router.get("/")
async def page(request: Request) -> Response:
    """The explorer. Its state lives in the query string (the search API's names)."""
    current = bundle()
    return _send(
        request,
        current.page,
        current.page_gzipped,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-cache",
            "Content-Security-Policy": PAGE_CSP,
        },
    )


@router.get("/static/{build}/{path:path}")
async def static(build: str, path: str, request: Request) -> Response:
    current = bundle()
    asset = current.assets.get(path)
    if asset is None:
        raise HTTPException(404, f"no asset {path[:100]!r}")
    if build != current.build:
        # An old page asking for an asset of an earlier build: the current one, briefly
        # cached, rather than a broken page.
        return RedirectResponse(f"/static/{current.build}/{path}", 307)
    return _send(
        request,
        asset.body,
        asset.gzipped,
        {"Content-Type": asset.media_type, "Cache-Control": IMMUTABLE},
    )


@router.get("/favicon.ico")
async def favicon() -> Response:
    return RedirectResponse(f"/static/{bundle().build}/favicon.svg", 301)


# -- signing in from the browser -------------------------------------------------------


@session_router.post("/login", responses=answers(401, 403, 415, 429))
async def web_login(
    body: LoginRequest,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    access: Annotated[AccessRepository, Depends(get_access)],
) -> Response:
    """Sign in from the page: the session token goes into an HttpOnly cookie, never into
    the answer, which carries the user and the CSRF token. Throttled and audited as
    POST /api/v1/auth/login. Only from a page of this origin, with a JSON body (an HTML
    form from another site can send neither)."""
    check_origin(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "body: send application/json")
    answer = await auth.login(body, request, settings, access)
    token: str = answer["token"]
    response = JSONResponse({"user": answer["user"], "csrf_token": csrf_token(token)})
    set_session_cookie(response, request, token, settings.session_lifetime_s)
    return response


@session_router.get("/session")
async def web_session(request: Request) -> dict[str, Any]:
    """Who the page is signed in as (`signed_in: false` rather than a 401, which the
    browser would log as an error on every visit to the sign-in form), and the CSRF
    token its writes must carry (null when the caller did not use the cookie: dev
    without credentials, or an Authorization header)."""
    try:
        principal = await authenticate(request)
    except HTTPException as exc:
        if exc.status_code == 401:
            return {"signed_in": False}
        raise
    token = cookie_token(request) if request.headers.get("authorization") is None else None
    return {
        "signed_in": True,
        "kind": principal.kind,
        "id": principal.id,
        "name": principal.name,
        "actions": sorted(a.value for a in principal.actions),
        "sources": None if principal.sources is None else sorted(principal.sources),
        "csrf_token": csrf_token(token) if token else None,
    }


@session_router.post("/logout", status_code=204, responses=answers(403))
async def web_logout(request: Request) -> Response:
    """End the cookie's session (checked for CSRF like any write) and drop the cookie."""
    check_origin(request)  # not even the cookie's removal for another site's form
    token = cookie_token(request)
    if token is not None:
        check_csrf(request, token)
        sessions = get_sessions(request)
        session = await sessions.get(token)
        if session is not None:
            await sessions.revoke(token)
            await (await get_access(request)).audit(
                "logout", actor_id=session.user_id, target_type="user",
                target_id=session.user_id, client_addr=client_address(request),
            )  # fmt: skip
    response = Response(status_code=204)
    clear_session_cookie(response)
    return response

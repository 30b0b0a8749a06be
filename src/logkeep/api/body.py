"""Reading request bodies with a size limit."""

from __future__ import annotations

from fastapi import HTTPException, Request


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body: {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body: over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)

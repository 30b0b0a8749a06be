"""The shippers' protocol routes, as app.py includes them, and their body limit (the
ingest one, compressed and decompressed, instead of the API's default)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from logkeep.api import elastic, gelf, loki, otlp

ROUTERS: tuple[APIRouter, ...] = (
    otlp.router,
    loki.router,
    elastic.router,
    elastic.prefixed,
    gelf.router,
)
INGEST_PATHS = frozenset(
    {otlp.PATH, loki.PATH, gelf.PATH, "/api/v1/ingest", "/_bulk", f"{elastic.PREFIX}/_bulk"}
)


class IngestLimits(dict[str, int]):
    """Body limits by path for BodyLimit: the ingest limit for every ingest path,
    `/{index}/_bulk` included, whatever the index."""

    def __init__(self, ingest_limit: int) -> None:
        super().__init__(dict.fromkeys(INGEST_PATHS, ingest_limit))
        self._ingest_limit = ingest_limit

    def get(self, key: str, default: Any = None, /) -> Any:
        if key in self or key.endswith("/_bulk"):
            return self._ingest_limit
        return default

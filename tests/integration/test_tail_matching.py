"""Live tail matches metadata filters as search does: the same table of stored values and
filters asked of PostgreSQL's jsonb containment (what search runs) and of tail's own."""

from __future__ import annotations

import asyncpg
import pytest

from logkeep.domain import exactjson
from logkeep.domain.search import metadata_document
from logkeep.domain.tail import contains
from tests.unit.test_tail_domain import NUMBER_CASES


@pytest.mark.parametrize(("stored", "query", "expected"), NUMBER_CASES)
async def test_tail_and_jsonb_agree(
    empty_database_url: str, stored: str, query: str, expected: bool
) -> None:
    # As ingest writes metadata (the API's encoding, COPYed as it is) and as the worker
    # reads it back for tail; the filter as both search and tail build it.
    metadata_json = exactjson.dumps_storable({"n": exactjson.loads(stored)})
    wanted = metadata_document([("metadata.n", query)])
    conn = await asyncpg.connect(empty_database_url)
    try:
        found = await conn.fetchval(
            "SELECT $1::text::jsonb @> $2::text::jsonb",
            metadata_json.decode(),
            exactjson.dumps(wanted).decode(),
        )
    finally:
        await conn.close()
    assert found is expected
    assert contains(exactjson.loads(metadata_json), wanted) is expected

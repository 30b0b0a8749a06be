"""JSON answers that carry log data as it was stored.

FastAPI writes a route's return value through pydantic, which writes a fraction of more
digits than a double holds (a Decimal, as the jsonb codec reads it back) as a JSON string.
Routes that answer with entries or metadata return `ExactJSONResponse` instead (declaring
their model with `response_model=` for the document), as search does.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from logkeep.domain import exactjson


class ExactJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # OPT_UTC_Z: instants end in `Z`, as the API's models and search write them.
        return exactjson.dumps(content, option=orjson.OPT_UTC_Z)

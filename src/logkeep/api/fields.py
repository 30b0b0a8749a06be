"""Field types for request bodies and paths that keep hostile input out of PostgreSQL:
text without NUL characters or lone surrogates, ids within PostgreSQL's integer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, Field, StrictInt, StrictStr

MAX_ID = 2**31 - 1  # integer columns


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8 text") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_storable)]
RowId = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]

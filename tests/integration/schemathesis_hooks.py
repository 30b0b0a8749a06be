"""Loaded by the schemathesis CLI in tests/integration/test_fuzz.py (SCHEMATHESIS_HOOKS):
how to put an NDJSON body on the wire, which schemathesis does not know by itself, and
which of its own requests would lock the fuzzer out."""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

# The id of the user the fuzzer logs in as, where credentials are required (test_fuzz.py
# sets it); unset in the dev run, which logs in as nobody.
OWN_USER_ID = os.environ.get("LOGKEEP_FUZZ_OWN_USER_ID")
USER_CHANGE = ("PATCH", "/api/v1/users/{user_id}")


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """Text as given; a list as one JSON line per item; anything else as one line."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@schemathesis.hook
def filter_case(ctx: schemathesis.HookContext, case: schemathesis.Case[Any]) -> bool:
    """Never a change of the fuzzer's own account. Schemathesis reuses the ids it has
    read in answers (GET /users lists this one), and a new password, is_active false or
    another role ends or narrows the fuzzer's session for the rest of the run: every
    later request is a 401 (the re-login fails too) or a 403, and checks fail on what is
    no fault of the server. Every other user, those it creates and ids that do not exist,
    is changed as before; that such a change ends the user's sessions is tested in
    tests/integration/test_auth.py."""
    if OWN_USER_ID is None or (case.method.upper(), case.path) != USER_CHANGE:
        return True
    return str(case.path_parameters.get("user_id")) != OWN_USER_ID

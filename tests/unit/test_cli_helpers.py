"""The CLI's pure pieces: error reading, metadata display, options into API parameters,
parsing rules from the command line, reconnect delays, and the credentials file."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import orjson
import pytest
import typer

from logkeep.cli.read import empty_hint, meta_params, window_bound
from logkeep.cli.sources import parse_rules, rule_value
from logkeep.client import error_reason, metadata_text, reconnect_delays
from logkeep.credentials import (
    CredentialsError,
    api_key,
    forget_token,
    load_token,
    save_token,
)

# -- errors from the API --------------------------------------------------------------------


def test_error_reason_reads_todays_detail_and_problem_details() -> None:
    assert error_reason(b'{"detail": "no source 7"}') == "no source 7"
    fastapi = {"detail": [{"loc": ["query", "since"], "msg": "bad duration", "type": "x"}]}
    assert error_reason(orjson.dumps(fastapi)) == "since: bad duration"
    problem = {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "since: '1x' is not a duration like 15m, 2h or 7d",
        "errors": [{"loc": ["query", "since"], "msg": "'1x' is not a duration like 15m, 2h or 7d"}],
    }
    # The sentence already names the field: it is not repeated.
    assert error_reason(orjson.dumps(problem)) == problem["detail"]
    two = problem | {
        "detail": "2 fields are invalid",
        "errors": [
            {"loc": ["body", "name"], "msg": "too long"},
            {"loc": ["body", "format_type"], "msg": "unknown"},
        ],
    }
    assert error_reason(orjson.dumps(two)) == (
        "2 fields are invalid: name: too long; format_type: unknown"
    )
    assert error_reason(b'{"title": "Service Unavailable", "status": 503}') == (
        "Service Unavailable"
    )
    assert error_reason(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert error_reason(b"") == "(no reason given)"


# -- metadata as shown --------------------------------------------------------------------


def test_metadata_text_is_the_keys_and_values_a_filter_takes() -> None:
    shown = metadata_text(
        {"status": 500, "code": "500", "http": {"route": "/pay"}, "note": "two words", "ok": True}
    )
    assert shown == 'status=500 code="500" http.route=/pay note="two words" ok=true'
    assert metadata_text({}) == ""
    assert metadata_text({"empty": {}, "none": None}) == "empty={} none=null"


# -- options into API parameters ------------------------------------------------------------


def test_meta_options_become_metadata_parameters() -> None:
    assert meta_params(["status=500", "http.route=/a=b", "status=501"]) == {
        "metadata.status": ["500", "501"],
        "metadata.http.route": ["/a=b"],
    }
    for bad in ("status", "=500"):
        with pytest.raises(typer.BadParameter, match="expected key=value"):
            meta_params([bad])


def test_window_bounds_take_rfc3339_or_a_duration_back_from_now() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert window_bound("3h", now) == "2026-05-01T09:00:00Z"
    assert window_bound("2026-04-30T00:00:00Z", now) == "2026-04-30T00:00:00Z"
    assert window_bound("yesterday", now) == "yesterday"  # the API names what is wrong
    assert window_bound(None, now) is None


def test_empty_hint_names_the_window_and_how_to_widen_it() -> None:
    assert empty_hint(None, None, None).startswith(
        "no entries in the last 24 h (the server's default window"
    )
    assert "--since 7d" in empty_hint(None, None, None)
    assert empty_hint("2h", None, None).startswith("no entries in the last 2h;")
    assert "widen --from/--to" in empty_hint(None, "2026-01-01T00:00:00Z", None)


# -- parsing rules from options -------------------------------------------------------------


def test_rule_values_are_text_unless_they_read_as_json_structures() -> None:
    assert rule_value("msg") == "msg"
    assert rule_value('["a","b"]') == ["a", "b"]
    assert rule_value('{"5xx":"ERROR"}') == {"5xx": "ERROR"}
    assert rule_value("[0-9]+ (?P<message>.*)") == "[0-9]+ (?P<message>.*)"
    assert rule_value("500") == "500"


def test_parse_rules_from_pairs_or_json() -> None:
    assert parse_rules([], None) is None
    assert parse_rules(["message_field=msg", "pattern=a=b"], None) == {
        "message_field": "msg",
        "pattern": "a=b",
    }
    assert parse_rules([], '{"message_field": "m"}') == {"message_field": "m"}
    with pytest.raises(typer.BadParameter, match="not both"):
        parse_rules(["a=b"], "{}")
    with pytest.raises(typer.BadParameter, match="must be a JSON object"):
        parse_rules([], "[1]")
    with pytest.raises(typer.BadParameter, match="not valid JSON"):
        parse_rules([], "{")
    with pytest.raises(typer.BadParameter, match="given twice"):
        parse_rules(["a=1", "a=2"], None)
    with pytest.raises(typer.BadParameter, match="expected key=value"):
        parse_rules(["pattern"], None)


# -- reconnecting -----------------------------------------------------------------------------


def test_reconnect_delays_grow_and_stop_at_the_cap() -> None:
    delays = list(islice(reconnect_delays(0.5, 10.0), 12))
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(5.0 <= d <= 10.0 for d in delays[6:])
    assert max(delays) <= 10.0


# -- the credentials file -------------------------------------------------------------------


def test_api_urls_are_filed_under_one_spelling() -> None:
    assert api_key("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert api_key("HTTP://LOCALHOST") == "http://localhost:80"
    assert api_key("https://logs.example.org/logkeep/") == "https://logs.example.org:443/logkeep"
    with pytest.raises(CredentialsError):
        api_key("ftp://example.org")


def test_tokens_are_saved_0600_per_api_and_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "config" / "logkeep" / "credentials.json"
    permissive = os.umask(0)  # the modes hold whatever the umask
    try:
        save_token("http://127.0.0.1:8000", "lks_one", "admin", path)
        save_token("http://127.0.0.1:9000/", "lks_two", "bob", path)
    finally:
        os.umask(permissive)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_token("http://127.0.0.1:8000/", path) == "lks_one"
    assert load_token("http://127.0.0.1:9000", path) == "lks_two"
    assert load_token("http://127.0.0.1:1", path) is None
    assert forget_token("http://127.0.0.1:8000", path)
    assert not forget_token("http://127.0.0.1:8000", path)
    assert load_token("http://127.0.0.1:9000", path) == "lks_two"
    assert forget_token("http://127.0.0.1:9000", path)
    assert not path.exists()
    assert load_token("http://127.0.0.1:9000", path) is None


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    save_token("http://127.0.0.1:8000", "lks_one", "admin", path)
    path.chmod(0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        load_token("http://127.0.0.1:8000", path)
    path.chmod(0o600)
    path.write_text("{not json")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        load_token("http://127.0.0.1:8000", path)

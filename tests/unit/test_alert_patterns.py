"""The patterns the alerting routes declare are the checks they make: every text a
pattern takes is one the server can use (urlsplit and httpx read the URL, the addresses
split into addresses, the instant parses), so the document never promises what the
server then fails on."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from logkeep.api.alert_channels import (
    ADDRESS_PATTERN,
    ADDRESSES_PATTERN,
    HTTP_URL_PATTERN,
    HTTPS_URL_PATTERN,
    MAX_RECIPIENTS,
    _recipients,
)
from logkeep.api.fields import RFC3339_PATTERN, _instant

MANY = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@MANY
@given(st.from_regex(re.compile(HTTP_URL_PATTERN), fullmatch=True))
def test_every_url_the_document_takes_is_one_the_server_reads(url: str) -> None:
    parts = urlsplit(url)  # raised on "http://[0b.0]" (ValueError), a 500 when shown
    assert parts.scheme in ("http", "https") and parts.hostname
    assert parts.port is None or 1 <= parts.port <= 65535
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        assert ipaddress.ip_address(parts.hostname).version == 6
    httpx.URL(url)  # what delivery sends to


@pytest.mark.parametrize(
    "url",
    [
        "http://[0b.0]/", "http://[::1", "http://h.test:0/", "http://h.test:65536/",
        "http://h.test/a b", "http://-h.test/", "ftp://h.test/", "HTTP://h.test/",
        "http:///x", "http://h.test\n", "http://[1.2.3.4]/", "http://[::1%25eth0]/",
    ],
)  # fmt: skip
def test_urls_the_document_refuses(url: str) -> None:
    assert not re.fullmatch(HTTP_URL_PATTERN, url)


@pytest.mark.parametrize(
    "url", ["http://[::1]:8080/hook", "https://[fd00::5]/a?b=c#d", "http://[::ffff:10.0.0.1]/",
            "https://user:pw@hooks.example.test:8443/x", "http://relay_1/"],
)  # fmt: skip
def test_urls_the_document_takes(url: str) -> None:
    assert re.fullmatch(HTTP_URL_PATTERN, url)
    assert bool(re.fullmatch(HTTPS_URL_PATTERN, url)) == url.startswith("https:")


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(re.compile(ADDRESSES_PATTERN), fullmatch=True))
def test_a_text_of_addresses_is_that_many_addresses(text: str) -> None:
    addresses = _recipients(text)
    assert 1 <= len(addresses) <= MAX_RECIPIENTS
    assert all(re.fullmatch(ADDRESS_PATTERN, a) for a in addresses)


def test_addresses_are_counted_and_never_echoed() -> None:
    with pytest.raises(PydanticCustomError, match="1 to 50"):
        _recipients([f"a{i}@x.test" for i in range(51)])
    with pytest.raises(PydanticCustomError, match="item 2 is not an email address") as refused:
        _recipients(["a@x.test", "secret token@x.test"])
    assert "secret" not in str(refused.value)


@MANY
@given(st.from_regex(re.compile(RFC3339_PATTERN), fullmatch=True))
def test_an_instant_the_document_takes_parses_or_says_why(text: str) -> None:
    try:
        instant: datetime | str = _instant(text)
    except PydanticCustomError as exc:  # 30 February; past year 9999 in UTC
        instant = exc.message()
    if isinstance(instant, str):
        assert instant in ("is not a day of the calendar", "is outside years 1 to 9999 in UTC")
    else:
        assert instant.utcoffset() is not None
        assert instant == datetime.fromisoformat(text)  # no digit cut, no zone dropped


@pytest.mark.parametrize(
    "value",
    [0, 1_700_000_000, "1700000000", "2026-01-01", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z",
     "2026-01-01T00:00:00.1234567Z", "2026-01-01T00:00:60Z", "0000-01-01T00:00:00Z", None, True],
)  # fmt: skip
def test_instants_the_document_refuses(value: object) -> None:
    with pytest.raises(PydanticCustomError, match="RFC 3339"):
        _instant(value)

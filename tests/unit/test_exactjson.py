"""exactjson: JSON whose numbers come back as they were given. Pure."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from logkeep.domain import exactjson
from logkeep.domain.exactjson import UnstorableNumber

RANGE = "(numbers are kept as 0, or from 5e-324 to 1.8e308 in magnitude)"

# (as written, the value read, its JSON as written back): every way in is tested with
# this table (tests/integration/test_numbers.py), so it is the rule in one place.
EXACT = [
    ("1000000000000000000000000000000", 10**30, "1000000000000000000000000000000"),
    ("18446744073709551616", 2**64, "18446744073709551616"),
    ("18446744073709551615", 2**64 - 1, "18446744073709551615"),
    ("-9223372036854775808", -(2**63), "-9223372036854775808"),
    ("-9223372036854775809", -(2**63) - 1, "-9223372036854775809"),
    ("0.12345678901234567", Decimal("0.12345678901234567"), "0.12345678901234567"),
    ("123456789012345678901234567890.5", Decimal("123456789012345678901234567890.5"), None),
    ("0.1", 0.1, "0.1"),
    ("1700000000.1234567", 1700000000.1234567, "1700000000.1234567"),  # zap's ts: a double
    ("1e30", 1e30, "1e+30"),  # the double prints back as the written value
    ("1E+2", 100.0, "100.0"),
    ("12.50", 12.5, "12.5"),  # an equal value
    ("-0", 0, "0"),  # PostgreSQL has no negative zero: an equal value
    ("-0.0", -0.0, "-0.0"),
    ("5e-324", 5e-324, "5e-324"),
    ("1e-320", 1e-320, "1e-320"),
    ("1.7976931348623157e308", 1.7976931348623157e308, "1.7976931348623157e+308"),
]
REFUSED = [
    ("1e999", f"the number 1E+999 is out of range {RANGE}"),
    ("-1e999", f"the number -1E+999 is out of range {RANGE}"),
    ("1e-400", f"the number 1E-400 is out of range {RANGE}"),
    ("2e308", f"the number 2E+308 is out of range {RANGE}"),
    (
        "1" + "0" * 400,
        f"the number 10000000000000000000000000000000... (401 characters) is out of range {RANGE}",
    ),
    ("NaN", "NaN is not a JSON number"),
    ("Infinity", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
]


@pytest.mark.parametrize(("text", "value", "written"), EXACT)
@pytest.mark.parametrize("kind", [bytes, str])
def test_numbers_are_read_and_written_exactly(
    text: str, value: Any, written: str | None, kind: type
) -> None:
    document = f'{{"n": {text}, "list": [{text}], "pad": "4bf92f3577b34da6a3ce929d0e0e4736"}}'
    read = exactjson.loads(document.encode() if kind is bytes else document)
    assert read["n"] == value and type(read["n"]) is type(value)
    assert read["list"] == [value]
    assert math.copysign(1, read["n"]) == math.copysign(1, value)  # -0.0 stays -0.0
    assert exactjson.number_problem(read["n"]) is None
    encoded = exactjson.dumps(read)
    assert encoded.startswith(b'{"n":' + (written or text).encode() + b",")
    assert Decimal(exactjson.dumps(read["n"]).decode()) == Decimal(text)


def test_texts_joined_by_nul_are_each_read_as_loads_reads_them() -> None:
    """Compaction's one call for a batch: every exact number of the table, a hex id that
    looks like a number out of range, and what orjson refuses, among plain texts."""
    texts = [b'{"a": 1, "s": "x"}']
    texts += [f'{{"n": {text}, "pad": {i}}}'.encode() for i, (text, _, _) in enumerate(EXACT)]
    texts += [b'{"trace_id": "b0319866628211970e5582c3b0a55c3"}', b"{}", b'{"n": 1e999}']
    texts += [b'{"b": [1, {"c": 2.5}]}']
    read = exactjson.loads_joined(b"\x00".join(texts))
    expected = [exactjson.loads(text) for text in texts]
    assert read == expected
    assert [list(map(type, r.values())) for r in read] == [
        list(map(type, e.values())) for e in expected
    ]
    clean = [b'{"a": %d}' % i for i in range(5)]
    assert exactjson.loads_joined(b"\x00".join(clean)) == [{"a": i} for i in range(5)]
    # Not one JSON value between two NULs: an error, as loads of that text gives.
    for bad in (b"1,2\x003", b"[1\x00 2]", b""):
        with pytest.raises(exactjson.JSONDecodeError):
            exactjson.loads_joined(bad)


@given(st.lists(st.sampled_from(["1", "0.12345678901234567", "1e30", '"1970e5582"', "[]"])))
def test_joined_texts_in_any_mix_read_as_one_by_one(values: list[str]) -> None:
    texts = [f'{{"v": {value}}}'.encode() for value in values] or [b"{}"]
    assert exactjson.loads_joined(b"\x00".join(texts)) == [exactjson.loads(t) for t in texts]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_numbers_beyond_a_double_and_nan_are_read_to_be_refused_by_name(
    text: str, reason: str
) -> None:
    """Read, not failed: one event holding them is refused, not the whole body."""
    events = exactjson.loads(f'[{{"message": "ok"}}, {{"a": {{"b": [0, {text}]}}}}]')
    assert events[0] == {"message": "ok"}
    assert exactjson.number_problem(events[1]["a"]["b"][1]) == reason
    assert exactjson.find_unstorable(events) == ("[1].a.b[1]", reason)
    with pytest.raises(UnstorableNumber) as info:
        exactjson.dumps(events[1])
    assert (info.value.path, info.value.reason) == (".a.b[1]", reason)
    assert str(info.value) == f"a.b[1]: {reason}"
    with pytest.raises(UnstorableNumber, match=r"^a\.b\[1\]: "):
        exactjson.loads(f'{{"a": {{"b": [0, {text}]}}}}', storable=True)


def test_loads_storable_passes_what_is_stored() -> None:
    assert exactjson.loads('{"n": 1e30, "big": 18446744073709551616}', storable=True) == {
        "n": 1e30,
        "big": 2**64,
    }


@pytest.mark.parametrize(
    "document",
    [
        b'{"a": 1,}',
        b'{"a": nope}',
        b'{"a": 123456789012345678901234567890, "b": nope}',  # read by the exact reader
        b'{"a": 1} x',
        b'{"a": "\xff"}',
        b"",
    ],
)
def test_malformed_json_fails_with_orjsons_reason_whichever_reader_read_it(
    document: bytes,
) -> None:
    with pytest.raises(orjson.JSONDecodeError) as expected:
        orjson.loads(document)
    with pytest.raises(exactjson.JSONDecodeError) as info:
        exactjson.loads(document)
    assert str(info.value) == str(expected.value)


def test_nesting_too_deep_for_either_reader_is_a_decode_error() -> None:
    with pytest.raises(exactjson.JSONDecodeError):
        exactjson.loads("[" * 100_000 + "1e999" + "]" * 100_000)


def test_text_that_is_not_utf8_is_not_json() -> None:
    with pytest.raises(exactjson.JSONDecodeError):
        exactjson.loads('{"a": "\udcff"}')  # a raw lone surrogate, as orjson says


def test_escaped_lone_surrogates_are_read_for_validation_to_refuse() -> None:
    assert exactjson.loads(b'{"a": "\\ud800", "n": 1}') == {"a": "\ud800", "n": 1}


@pytest.mark.parametrize(
    "filler",
    [
        '"trace": "4bf92f3577b34da6a3ce929d0e0e4736"',  # hex, with e and digits
        '"id": "123e4567-e89b-12d3-a456-426614174000"',
        '"version": "1.2.3.4.5.6.7.8.9.10.11.12"',
        '"phone": "555-1234", "when": "2026-01-02T03:04:05.123456789Z"',
        '"ns": 1700000000123456789, "us": 1700000000123456',  # ints orjson holds
        '"word": "e-1000 e+999 E-300"',
    ],
)
def test_lookalikes_in_the_text_do_not_change_what_is_read(filler: str) -> None:
    document = f'{{{filler}, "n": 12.5}}'
    assert exactjson.loads(document) == orjson.loads(document)


def test_integers_of_many_digits_are_read_without_quadratic_int() -> None:
    digits = "7" * 50_000
    value = exactjson.loads(f'{{"n": {digits}}}')["n"]
    assert value == Decimal(digits)
    assert "out of range" in (exactjson.number_problem(value) or "")


# Numbers as JSON writes them, with the lengths and exponents that matter.
json_numbers = st.from_regex(
    r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


@given(json_numbers)
@example("0.10000000000000001")  # 17 digits that read as the double 0.1
@example("9007199254740993")  # 2**53 + 1
@example("1e-308")
@example("2.2250738585072011e-308")
def test_any_number_is_kept_exactly_or_refused(text: str) -> None:
    """Whatever the number, the value written back is the value written in, or the
    number is refused; and the fast path reads it as the exact reader does."""
    document = f'{{"pad": "x1e-500", "n": {text}, "hex": "ab12e999"}}'
    value = exactjson.loads(document)["n"]
    exact = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal).decode(document)["n"]
    if exactjson.number_problem(value) is None:
        assert Decimal(exactjson.dumps(value).decode()) == exact
    else:  # beyond what a double holds, one way or the other
        assert not math.isfinite(float(exact)) or (float(exact) == 0 and exact != 0)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30012", 30012),
        ("-7", -7),
        ("0", 0),
        ("-0", 0),
        ("0.25", 0.25),
        ("12.50", 12.5),
        ("0.12345678901234567", Decimal("0.12345678901234567")),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("007", None),  # an id
        ("1e5", None),  # hex, or a short hash
        ("1.", None),
        (".5", None),
        ("+1", None),
        ("1.2.3", None),
        ("9" * 400, None),  # beyond a double: stays text
        ("", None),
        ("NaN", None),
    ],
)
def test_number_from_text(text: str, value: Any) -> None:
    found = exactjson.number_from_text(text)
    assert found == value and type(found) is type(value)


def test_dumps_writes_big_integers_and_decimals_and_keeps_orjson_options() -> None:
    value = {"b": [2**70, -(2**70)], "a": Decimal("1.50"), "c": {"d": 10**30}}
    assert exactjson.dumps(value, option=orjson.OPT_SORT_KEYS) == (
        b'{"a":1.50,"b":[1180591620717411303424,-1180591620717411303424],'
        b'"c":{"d":1000000000000000000000000000000}}'
    )


@pytest.mark.parametrize("value", [{"a": object()}, {1: "int key"}, {"a": {1, 2}}])
def test_dumps_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(TypeError):
        exactjson.dumps(value)


def test_dumps_storable_refuses_nan_floats_that_orjson_writes_as_null() -> None:
    assert orjson.dumps({"a": math.nan}) == b'{"a":null}'
    assert exactjson.dumps_storable({"a": None, "b": [1.5]}) == b'{"a":null,"b":[1.5]}'
    with pytest.raises(UnstorableNumber, match=r"^b\[1\]: -Infinity is not a JSON number$"):
        exactjson.dumps_storable({"a": None, "b": [1.5, -math.inf]})


def test_deep_nesting_is_walked_without_recursion() -> None:
    deep: Any = [float("nan")]
    for _ in range(5000):
        deep = {"a": [deep]}
    path, reason = exactjson.find_unstorable(deep) or ("", "")
    assert reason == "NaN is not a JSON number"
    assert path == (".a[0]" * 5000)[:100] + "..."  # named, not spelled out
    deep = {"ok": None}
    for _ in range(300):
        deep = {"a": [deep]}
    with pytest.raises(TypeError, match=r"[Rr]ecursion"):  # orjson writes 254 levels at most
        exactjson.dumps_storable({"a": deep, "b": None})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e99999999999999999999", "the number 1E+999999999999999999 is out of range"),
        ("-1.5e-99999999999999999999", "the number -1E-999999999999999999 is out of range"),
        ("0e99999999999999999999", None),  # zero, whatever its exponent
        ("-0.0e-99999999999999999999", None),
    ],
)
def test_exponents_beyond_what_decimal_holds_are_read(text: str, reason: str | None) -> None:
    """Decimal refuses exponents past 10**18: the reader must not fail on them."""
    value = exactjson.loads(f'{{"n": {text}}}')["n"]
    problem = exactjson.number_problem(value)
    assert problem == reason if reason is None else (problem or "").startswith(reason)
    if reason is None:
        assert value == 0

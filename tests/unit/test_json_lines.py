"""Reading an NDJSON body at once (read_json_lines) gives, line by line, what reading
each line on its own gives (decode_line, then parse_json_line): the same values, the
same numbers exactly, the same reasons for the lines that are not events."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logkeep.domain import exactjson
from logkeep.domain.entry import InvalidLogEntry
from logkeep.domain.ingest import decode_line, parse_json_line, read_json_lines, split_lines

MAX_LINE = 200


def one_by_one(body: bytes, max_bytes: int = MAX_LINE) -> list[tuple[int, Any]]:
    """The reference: each line read alone, as the API read NDJSON before."""
    out: list[tuple[int, Any]] = []
    for number, raw in split_lines(body):
        try:
            out.append((number, parse_json_line(decode_line(raw, max_bytes))))
        except InvalidLogEntry as exc:
            out.append((number, exc))
    return out


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (1 is not 1.0, NaN is NaN), and
    errors with equal messages."""
    if isinstance(a, InvalidLogEntry) or isinstance(b, InvalidLogEntry):
        return type(a) is type(b) and str(a) == str(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal) and a.is_nan():
        return bool(b.is_nan())
    return bool(a == b) and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


def read(body: bytes, max_bytes: int = MAX_LINE) -> list[tuple[int, Any]]:
    return read_json_lines(body, list(split_lines(body)), max_bytes)


def check(body: bytes, max_bytes: int = MAX_LINE) -> list[tuple[int, Any]]:
    got, expected = read(body, max_bytes), one_by_one(body, max_bytes)
    assert [n for n, _ in got] == [n for n, _ in expected]
    for (number, value), (_, reference) in zip(got, expected, strict=True):
        assert same(value, reference), (number, value, reference)
    return got


NASTY_LINES = [
    b'{"message": "ok", "n": 1}',
    b'{"n": 100000000000000000000000000000}',  # beyond 64 bits
    b'{"n": 0.12345678901234567}',  # 17 digits, not a double
    b'{"n": 1700000000.1234567}',  # zap's epoch: 17 digits, a double all the same
    b'{"n": 1e-400}',  # underflow
    b'{"n": 1E-400, "m": 4.9E-324, "k": -2.5E-310}',  # upper case, subnormals
    b'{"n": 1e999}',  # overflow
    b'{"n": NaN}',
    b'{"n": -Infinity}',
    b'{"s": "\\ud800"}',  # an escaped lone surrogate
    b'{"s": "a\\u0000b"}',
    b'{"s": "a\x00b"}',  # a raw NUL: not JSON
    b'{"s": "\xff"}',  # not UTF-8
    b"\xef\xbb\xbf" + b'{"bom": 1}',
    b'{"id": "123456789012345678901234567890"}',  # digits in a string
    b'{"v": "1.2.3.4.5.6.7.8.9.10"}',
    b'{"w": "e-1000 x1e-500"}',
    b'{"a": 1,}',
    b"[1, 2",
    b"42",
    b'{"long": "' + b"x" * 300 + b'"}',  # over MAX_LINE
    b'{"m": ' + b"1" * 40 + b"e-300}",  # a mantissa longer than the first look back
    b'{"m": 0.' + b"0" * 70 + b"1e-250}",
    b"  ",
]


def test_every_nasty_line_reads_as_it_does_alone() -> None:
    got = check(b"\n".join(NASTY_LINES))
    assert len(got) == len(NASTY_LINES) - 1  # the blank line is skipped
    values = dict(got)
    assert values[2] == {"n": 10**29}
    assert values[3] == {"n": Decimal("0.12345678901234567")}
    assert type(values[4]["n"]) is float
    assert isinstance(values[12], InvalidLogEntry)  # a raw NUL
    assert str(values[13]) == "line: is not valid UTF-8 (byte 7)"
    assert values[14] == {"bom": 1}
    assert values[6] == {"n": Decimal("1E-400"), "m": Decimal("4.9E-324"), "k": -2.5e-310}
    assert "over the 200-byte line limit" in str(values[21])


def test_crlf_and_blank_lines_keep_their_numbers() -> None:
    body = b'{"a": 1}\r\n\r\n{"n": 100000000000000000000000000000}\r\n\n{"b": 0.1}\r\n'
    assert [n for n, _ in check(body)] == [1, 3, 5]


def test_only_the_lines_holding_an_inexact_number_are_read_exactly() -> None:
    """Neighbours of a line holding 10**30 are still read by orjson (same values)."""
    body = b'{"n": 1.5}\n{"big": 1000000000000000000000000000000}\n{"n": 2}'
    offsets = list(exactjson.inexact_numbers(body))
    assert offsets == [body.index(b"1000")]
    assert [v for _, v in read(body)] == [{"n": 1.5}, {"big": 10**30}, {"n": 2}]


def test_inexact_numbers_in_order_and_nothing_for_exact_ones() -> None:
    body = b'{"a": 1e-400, "b": 123456789012345678901234, "c": 0.1, "d": 9007199254740993}'
    assert list(exactjson.inexact_numbers(body)) == [
        body.index(b"1e-400"),
        body.index(b"1234"),
    ]  # 2**53 + 1 is an integer orjson holds
    assert list(exactjson.inexact_numbers(b'{"ts": 1700000000.1234567, "e": 1e-300}')) == []
    # Text in a string that looks like such a number is not pointed at where a number
    # cannot start (after a quote or a letter: hex ids), and may be elsewhere: it is then
    # only read exactly.
    for text in (b'{"x": "1e-999"}', b'{"trace": "b0319866628211970e5582c3b0a55c3"}'):
        assert list(exactjson.inexact_numbers(text)) == []
    lookalike = b'{"x": "a, 1e-999"}'
    assert list(exactjson.inexact_numbers(lookalike)) == [10]
    assert read(lookalike) == [(1, {"x": "a, 1e-999"})]
    # Where a number can start: after [ , : (spaces and tabs aside), a line's start.
    for text in (b"[1,\t12345678901234567890123]", b"1\n\n-1e-400", b"\xef\xbb\xbf1e-400"):
        assert list(exactjson.inexact_numbers(text)), text


def test_many_long_mantissas_before_exponents_are_found() -> None:
    """Each exponent's mantissa is looked for no further back than it goes."""
    numbers = [b"1" + b"0" * 100 + b"e-500", b"2" * 80 + b".5e-300", b"0.00000001e-5"]
    body = b"\n".join(b'{"n": ' + n + b"}" for n in numbers * 200)
    got = check(body)
    assert sum(isinstance(v["n"], Decimal) for _, v in got) == 400  # the underflows
    assert {float(v["n"]) for _, v in got} >= {0.0, 1e-13}


json_numbers = st.from_regex(
    r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
texts = st.text(alphabet=st.sampled_from('ab e-E.0123456789"\\\x00é\U0001f600'), max_size=30)
values = st.recursive(
    st.sampled_from(["null", "true", "false", "NaN"])
    | json_numbers
    | texts.map(lambda t: orjson.dumps(t).decode()),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]")
        | st.dictionaries(st.sampled_from(["a", "n", "e"]), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f'"{k}": {v}' for k, v in d.items()) + "}"
        )
    ),
    max_leaves=6,
)
lines = values.map(str.encode) | st.binary(max_size=40) | st.sampled_from(NASTY_LINES)


@given(st.lists(lines, max_size=12), st.sampled_from([b"\n", b"\r\n"]))
@settings(max_examples=200)
@example([b'{"n": 1e-400}', b'{"n": 1.5}'], b"\n")
@example([b'{"n": 12345678901234567890123}', b"\xff"], b"\r\n")
def test_a_body_reads_as_its_lines_read_alone(body_lines: list[bytes], newline: bytes) -> None:
    check(newline.join(body_lines))

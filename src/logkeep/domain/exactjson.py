"""JSON whose numbers come back as they were given. Pure, no I/O.

orjson holds numbers in 64-bit integers and doubles: it reads 10**30 as 1e+30, rounds
0.12345678901234567 to the nearest double, reads 1e-400 as 0.0 without a word, and cannot
write an integer beyond 64 bits. PostgreSQL's jsonb keeps any decimal exactly. So:

- `loads` lets orjson read what it reads exactly (nearly every line: a cheap scan of the
  text finds the few numbers it might not), and reads the rest with the standard library:
  integers become `int` at any size, other numbers a `float` when the double is exactly
  the written value (0.1, 1e5, 12.50) and a `Decimal` otherwise. NaN, Infinity and numbers
  no double can hold (1e999, 1e-400) come back as `Decimal` too, so that the one event
  holding them can be refused by name instead of the whole body.
- `dumps` is orjson, with `Decimal` and integers beyond 64 bits written as their exact
  digits, and UnstorableNumber (naming where) for a number logkeep does not store.

The rule for storing a number: its decimal value is kept exactly, as long as a double
could hold its magnitude: 0, or from 5e-324 to 1.8e308. NaN and infinities are not JSON.
(Beyond that range PostgreSQL could still store it, but no JSON reader of a double can
read it back, and `1e100000` would come back as a hundred thousand digits.)
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from itertools import accumulate
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

_MIN_INT64, _MAX_UINT64 = -(2**63), 2**64 - 1  # what orjson reads and writes as integers
# More digits than any storable integer has (1.8e308 has 309): read as Decimal, so that
# int() never spends quadratic time on a hostile number (and its 4300-digit limit).
_MAX_INT_DIGITS = 400


class UnstorableNumber(ValueError):
    """A number logkeep does not store; `path` says where (`.a.b[2]`), `reason` why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path.lstrip('.') or 'value'}: {reason}")
        self.path = path
        self.reason = reason


# -- reading -------------------------------------------------------------------------------

# Where orjson may be inexact, in the text's shape (digits and dots as 0, E as e): a run
# of 16 digits and dots (an integer past 64 bits, a fraction of 16 digits or more) or a
# negative exponent of three digits (an underflow). Elsewhere every number has at most
# 15 significant digits within the range of a double, and orjson's double prints back as
# exactly the written value. Overflow makes orjson fail. (The translation and the two
# searches cost about half of what orjson takes to read the text, so the API looks once
# at a whole NDJSON body rather than at each line: inexact_numbers.)
_SHAPE = bytes.maketrans(b"0123456789.E", b"00000000000e")
_LONG_RUN = b"0" * 16
_TINY_EXPONENT = b"e-000"
_NUMBER_AT = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _kept_by_orjson(token: bytes) -> bool:
    """Whether orjson reads this JSON number exactly."""
    if token.lstrip(b"-").isdigit():  # an integer
        if len(token) <= 19 and token[0] != 0x2D:  # below 10**19: within 64 bits
            return True
        return len(token) <= 21 and _MIN_INT64 <= int(token) <= _MAX_UINT64
    value = float(token)
    if not math.isfinite(value):
        return False
    text = repr(value)
    written = token.decode("ascii")
    return text == written or Decimal(text) == _decimal(written)


def _run_start(shape: bytes, at: int) -> int:
    """Where the run of digits and dots (all "0" in the shape) that ends at `at` starts,
    looking back no further than the run goes (twice as far each time): a body holding
    many long runs costs their length, not the length of everything before each."""
    span = 32
    while True:
        low = max(0, at - span)
        start = low + len(shape[low:at].rstrip(b"0"))
        if start > low or low == 0:
            return start
        span *= 2


# What JSON text may hold right before a number (spaces and tabs aside): nothing (the
# text's start), "[", "," or ":"; and, to stay on the safe side, a line's end (NDJSON),
# the NUL between joined texts and the last byte of a byte order mark.
_BEFORE_A_NUMBER = frozenset(b"[,:\n\r\x00\xbf")


def _may_be_a_number(raw: bytes, start: int) -> bool:
    """Whether a number may start at `start`: not when a letter or a quote comes before it,
    as in hex ids such as "b0319866628211970e5582..." (a run of 16 digits and an exponent
    out of range: in a 32-digit trace id 1 time in 2,000, so in a third of compaction's
    batches of 1,000 such events, and every such text went to the standard library)."""
    at = start - 1
    while at >= 0 and raw[at] in b" \t":
        at -= 1
    return at < 0 or raw[at] in _BEFORE_A_NUMBER


def _note_inexact(raw: bytes, start: int, at: int, found: list[int]) -> int:
    """Note in `found` the number starting at `start` (or at the "-" before it) if it
    reaches past `at`, may be a number where it is, and orjson does not read it exactly.
    Where the next search ends: no other number starts in this run, whether it held one
    or only text that looks like one (in a string, a version like 1.2.3.4...)."""
    if start and raw[start - 1] == 0x2D:  # "-"
        start -= 1
    number = _NUMBER_AT.match(raw, start)
    if (
        number is not None
        and number.end() > at
        and _may_be_a_number(raw, start)
        and not _kept_by_orjson(number[0])
    ):
        found.append(start)
    return start


def inexact_numbers(raw: bytes) -> list[int]:
    """The offsets in `raw` (JSON text, or many: NDJSON) of the numbers orjson would not
    read exactly (a few of them may be text in a string that looks like one), in order.
    Where there are none, orjson reads `raw`, and each line of it, exactly. One look at
    a whole NDJSON body costs about half of what orjson takes to read its lines.

    (A number can only start where its run of digits and dots starts, so each run is
    looked at once. The searches go backwards: rfind skips by the needle's first byte,
    "e" or "0", and digits are far more common in logs than "e".)"""
    shape = raw.translate(_SHAPE)
    found: list[int] = []
    for needle in (_LONG_RUN, _TINY_EXPONENT):
        at = shape.rfind(needle)
        while at >= 0:
            # A long run's number starts where the run does; an exponent's mantissa is
            # the run before its "e".
            end = at + len(needle) if needle is _LONG_RUN else at
            at = shape.rfind(needle, 0, _note_inexact(raw, _run_start(shape, end), at, found))
    return sorted(set(found))


def _decimal(text: str) -> Decimal:
    """Decimal(text), also for an exponent beyond Decimal's own (10**18 digits): then a
    number that is as certainly out of range, with the same sign (or 0 if it is 0)."""
    try:
        return Decimal(text)
    except InvalidOperation:
        mantissa, _, exponent = text.lower().partition("e")
        sign = "-" if mantissa.startswith("-") else ""
        if not mantissa.lstrip("-").replace(".", "").strip("0"):
            return Decimal(sign + "0")
        return Decimal(f"{sign}1E{'-' if exponent.startswith('-') else '+'}999999999999999999")


def _integer(text: str) -> int | Decimal:
    return Decimal(text) if len(text) > _MAX_INT_DIGITS else int(text)


def _fraction(text: str) -> float | Decimal:
    """A float when the double is exactly the written value (its shortest form has the
    same decimal value), else the exact Decimal."""
    value = float(text)
    shortest = repr(value)
    if shortest == text:
        return value
    exact = _decimal(text)
    if math.isfinite(value) and (value != 0 or exact == 0) and Decimal(shortest) == exact:
        return value
    return exact


_EXACT = json.JSONDecoder(parse_int=_integer, parse_float=_fraction, parse_constant=Decimal)


def loads(data: bytes | str, *, storable: bool = False) -> Any:
    """JSON with exact numbers (see the module's docstring); JSONDecodeError otherwise.
    With `storable`, refuse what logkeep cannot store: UnstorableNumber (naming where) for
    a number, and JSONDecodeError for an escaped lone surrogate, as orjson does (without
    it, the standard library reads one so that validation can refuse the one event)."""
    raw = data if isinstance(data, bytes) else None
    if raw is None:
        try:
            raw = data.encode("utf-8")  # type: ignore[union-attr]
        except UnicodeEncodeError:
            return orjson.loads(data)  # a lone surrogate: not JSON text, as orjson says
    failure = None
    if not inexact_numbers(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            failure = exc  # also NaN, 1e999 and escaped lone surrogates: the stdlib reads them
    value = _read_exactly(data, failure)
    if storable:
        if failure is None:
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                failure = exc
        if failure is not None and "surrogate" in str(failure):
            raise failure
        problem = find_unstorable(value)
        if problem is not None:
            raise UnstorableNumber(*problem)
    return value


def loads_joined(joined: bytes) -> list[Any]:
    """`loads` of each JSON text of `joined`, the texts separated by NUL (which JSON text
    cannot hold raw): one look at them all and one orjson call, then only the texts that
    inexact_numbers points at are read again by the exact reader. (Hex ids such as
    `...1970e5582...` look like numbers out of range: a text holding one must not send
    every other text to the standard library.)"""
    careful = inexact_numbers(joined)
    try:
        values: list[Any] = orjson.loads(b"[" + joined.replace(b"\x00", b",") + b"]")
    except orjson.JSONDecodeError:
        values = []
    if len(values) != joined.count(0) + 1:  # NaN, 1e999, a text that is not one value
        return [loads(text) for text in joined.split(b"\x00")]  # their errors, text by text
    if careful:
        texts = joined.split(b"\x00")
        ends = list(accumulate(len(text) + 1 for text in texts))  # each text's end, past its NUL
        for index in sorted({bisect_right(ends, at) for at in careful}):
            values[index] = loads(texts[index])
    return values


def read_exactly(data: bytes | str) -> Any:
    """`loads` of a text that inexact_numbers pointed at: read by the exact reader at
    once (JSONDecodeError with orjson's reason otherwise)."""
    return _read_exactly(data, None)


def _read_exactly(data: bytes | str, failure: orjson.JSONDecodeError | None) -> Any:
    try:
        return _EXACT.decode(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        pass
    if failure is None:
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            failure = exc
        else:
            failure = orjson.JSONDecodeError("nesting is too deep", str(data)[:100], 0)
    # orjson's reason, whichever reader read it, so that it reads the same on every path.
    raise failure


# -- numbers -------------------------------------------------------------------------------

RANGE = "0, or from 5e-324 to 1.8e308 in magnitude"


def _shown(value: int | float | Decimal) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        # str() of a huge int costs quadratic time (and refuses past 4300 digits).
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = str(value) if isinstance(value, Decimal | int) else repr(value)
    if len(text) > 40:
        text = f"{text[:32]}... ({len(text)} characters)"
    return f"the number {text}"


def number_problem(value: object) -> str | None:
    """Why logkeep does not store this number, or None (also for non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if isinstance(value, int):
        if _MIN_INT64 <= value <= _MAX_UINT64:
            return None
        try:
            float(value)
        except OverflowError:
            return f"{_shown(value)} is out of range (numbers are kept as {RANGE})"
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
    elif value.is_finite():
        try:
            as_float = float(value)
        except (OverflowError, InvalidOperation):
            as_float = math.inf
        if math.isfinite(as_float) and (as_float != 0 or value == 0):
            return None
        return f"{_shown(value)} is out of range (numbers are kept as {RANGE})"
    nan = value.is_nan() if isinstance(value, Decimal) else math.isnan(value)
    name = "NaN" if nan else "Infinity" if value > 0 else "-Infinity"
    return f"{name} is not a JSON number"


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """(path, reason) of a number in `value` that logkeep does not store, or None.
    Without recursion: JSON may nest a thousand deep, deeper than Python calls."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, container = pending.pop()
        if isinstance(container, Mapping):
            children: Any = ((f".{str(key)[:64]}", item) for key, item in container.items())
        elif isinstance(container, list | tuple):
            children = ((f"[{index}]", item) for index, item in enumerate(container))
        else:
            children = (("", container),)
        for step, item in children:
            if isinstance(item, Mapping | list | tuple):
                pending.append((path + step, item))
            elif type(item) is not str and (problem := number_problem(item)) is not None:
                where = path + step
                return (where if len(where) <= 100 else f"{where[:100]}..."), problem
    return None


def number(literal: str) -> int | float | Decimal:
    """The value of a JSON number literal (its syntax already checked), as `loads` reads
    it; `number_problem` says whether logkeep stores it."""
    return _fraction(literal) if any(c in literal for c in ".eE") else _integer(literal)


_TEXT_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?")


def number_from_text(text: str) -> int | float | Decimal | None:
    """A number written plainly (`-12`, `0.5`, `30012`: no exponent, no leading zero,
    no `+`) as the exact value logkeep stores, or None: text that is not such a number,
    or one out of range, stays text."""
    match = _TEXT_NUMBER.fullmatch(text)
    if match is None:
        return None
    value = _fraction(text) if match[1] else _integer(text)
    return None if number_problem(value) else value


# -- writing -------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, Decimal) and number_problem(value) is None:
        return orjson.Fragment(str(value).encode("ascii"))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _big_integers_written(value: Any) -> Any:
    """`value` with the integers orjson cannot write as fragments of their digits."""
    if isinstance(value, Mapping):
        return {k: _big_integers_written(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_integers_written(v) for v in value]
    if isinstance(value, int) and not _MIN_INT64 <= value <= _MAX_UINT64:
        return orjson.Fragment(str(value).encode("ascii"))
    return value


def dumps(value: Any, *, option: int | None = None) -> bytes:
    """orjson.dumps with exact numbers: UnstorableNumber for a number logkeep does not
    store (except NaN and infinite floats, which orjson writes as null: `dumps_storable`
    refuses those too), TypeError for a value that is not JSON."""
    try:
        return orjson.dumps(value, default=_default, option=option)
    except orjson.JSONEncodeError as exc:
        problem = find_unstorable(value)
        if problem is not None:
            raise UnstorableNumber(*problem) from None
        if "64-bit" not in str(exc):
            raise
    return orjson.dumps(_big_integers_written(value), default=_default, option=option)


def dumps_storable(value: Any, *, option: int | None = None) -> bytes:
    """`dumps`, refusing NaN and infinite floats too (orjson would write them as null)."""
    try:  # what `dumps` does first, without its call: this runs for every event
        encoded = orjson.dumps(value, default=_default, option=option)
    except orjson.JSONEncodeError:
        encoded = dumps(value, option=option)
    if b"null" in encoded:
        problem = find_unstorable(value)
        if problem is not None:
            raise UnstorableNumber(*problem)
    return encoded

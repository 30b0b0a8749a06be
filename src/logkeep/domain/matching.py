"""What an entry must hold to match a search, decided the same way in both storage tiers.
Pure, no I/O.

Words. A word is a run of letters and digits (Unicode); everything else separates words,
so `com.acme.PaymentService`, `/api/zebra42` and `ORD-123456` hold the words
`paymentservice`, `zebra42`, `ord` and `123456`. Each whitespace-separated term of `q`
must occur in the message, case-insensitively, as whole words: `q=zebra42` finds
`/api/zebra42`, `q=ORD-123456` finds `order ORD-123456 failed` (but not `ORD-1234567`),
`q=10.0.0.1` finds the address but not `10.0.0.12`, `q=user.name@example.com` the address.
A term that starts (ends) with a letter or digit must start (end) on a word boundary.

Case. Text is folded with Python's lower-casing, character by character (both sigmas
fold to one); the two characters whose lower case is ASCII though they are not (U+0130 and
the Kelvin sign) stay as they are, so that an ASCII term is found only where the text
holds those ASCII letters in some case. That is what lets PostgreSQL narrow the hot tier
with `ILIKE ... COLLATE "C"` (ASCII case-folding, whatever the database's locale) before
this module decides: every match here also matches there (`sql_hints`).

Metadata. `metadata @> document` means what PostgreSQL's jsonb containment means; the
compressed tier evaluates it here (`contains`), the hot tier in PostgreSQL, and a test
holds the two to the same answers.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from typing import Any

_WORD = re.compile(r"[^\W_]+")
_WORD_CHAR = re.compile(r"[^\W_]")
_ASCII_RUN = re.compile(r"[\x00-\x7f]{2,}")
# Non-ASCII characters whose lower case holds ASCII: kept as they are by `fold`
# (tests/unit/test_matching.py checks every code point).
FOLD_EXCEPTIONS = frozenset({"\u0130", "\u212a"})


def fold(text: str) -> str:
    """Lower case, one character for one, never turning a non-ASCII character into ASCII,
    and the same for a character wherever it stands: Python lower-cases a capital sigma
    to the final sigma at the end of a word, so both sigmas fold to the medial one (a
    message folds alike alone or joined to others, and `ΟΔΟΣ` matches `οδος`)."""
    if text.isascii():
        return text.lower()
    if not any(c in text for c in FOLD_EXCEPTIONS):
        return text.lower().replace("\u03c2", "\u03c3")
    return "".join(c if c in FOLD_EXCEPTIONS else c.lower() for c in text).replace(
        "\u03c2", "\u03c3"
    )


def words(text: str) -> list[str]:
    """The words of `text`, folded, in order (repeats kept)."""
    return _WORD.findall(fold(text))


# ASCII text: every byte that is not a letter or digit becomes a space, then split.
_ASCII_SEPARATORS = bytes(c if chr(c).isalnum() else 0x20 for c in range(128)) + bytes(128)


def word_set(texts: Iterable[str]) -> set[str]:
    """The distinct words of many texts (one pass over their joined, folded text)."""
    joined = fold("\n".join(texts))
    if joined.isascii():
        return set(joined.encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii").split())
    return set(_WORD.findall(joined))


# ASCII bytes: letters lower-cased, digits kept, every other byte a space (ASCII text
# folds by lower-casing, and its word characters are its letters and digits).
_ASCII_WORD_BYTES = bytes(
    ord(chr(c).lower()) if chr(c).isalnum() else 0x20 for c in range(128)
) + bytes(128)


def word_text(encoded: bytes) -> bytes:
    """The words of UTF-8 text, folded, as UTF-8 with spaces between them: what a
    chunk's Bloom filter hashes. ASCII text becomes that in one pass in C (repeats
    kept), without decoding or folding it."""
    if encoded.isascii():
        return encoded.translate(_ASCII_WORD_BYTES)
    text = encoded.decode("utf-8", "surrogatepass")
    return b" ".join(word.encode("utf-8", "surrogatepass") for word in word_set([text]))


def is_word_char(char: str) -> bool:
    return bool(_WORD_CHAR.match(char))


def term_pattern(term: str) -> re.Pattern[str]:
    """A regular expression finding `term` (folded) in folded text as whole words."""
    folded = fold(term)
    start = r"(?<![^\W_])" if is_word_char(folded[0]) else ""
    end = r"(?![^\W_])" if is_word_char(folded[-1]) else ""
    return re.compile(start + re.escape(folded) + end)


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def sql_hints(text: str) -> list[str]:
    """ILIKE patterns (ASCII case-insensitive, `COLLATE "C"`) every message holding `text`
    (folded) matches: one per run of two or more ASCII characters in it."""
    return [f"%{like_escape(run)}%" for run in _ASCII_RUN.findall(text)]


# ---------------------------------------------------------------------------------------
# jsonb containment


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # exactjson returns a float only when it is exactly the number written: its
        # shortest repr is that number.
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        return value
    return None


def _scalar_equal(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None or nb is not None:
        return na is not None and nb is not None and na == nb
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if a is None or b is None:
        return a is None and b is None
    return isinstance(a, str) and isinstance(b, str) and a == b


def _is_container(value: Any) -> bool:
    return isinstance(value, dict | list)


def contains(container: Any, contained: Any) -> bool:
    """PostgreSQL's `container @> contained` for jsonb values below the top level (the
    top-level exception for a scalar in an array does not arise: metadata is an object)."""
    if isinstance(contained, dict):
        if not isinstance(container, dict):
            return False
        return all(
            key in container and contains(container[key], value) for key, value in contained.items()
        )
    if isinstance(contained, list):
        if not isinstance(container, list):
            return False
        for element in contained:
            if _is_container(element):
                if not any(contains(candidate, element) for candidate in container):
                    return False
            elif not any(
                not _is_container(candidate) and _scalar_equal(candidate, element)
                for candidate in container
            ):
                return False
        return True
    if _is_container(container):
        return False
    return _scalar_equal(container, contained)


def _whole_tens_term(value: int) -> str | None:
    """What `#{Decimal(value).normalize()}` writes for a nonzero multiple of ten, without
    the Decimal: `#2E+2`, `#-1.23E+3`; None past the 28 digits normalize rounds to."""
    digits = str(abs(value))
    significant = digits.rstrip("0")
    if len(significant) > 28:
        return None
    point = "." if len(significant) > 1 else ""
    sign = "-" if value < 0 else ""
    return f"#{sign}{significant[0]}{point}{significant[1:]}E+{len(digits) - 1}"


def scalar_term(value: Any) -> str:
    """A scalar as an index term: numbers by value (1, 1.0 and 1e0 alike), types apart."""
    if type(value) is int and value:
        if value % 10:
            return f"#{value}"  # what Decimal(value).normalize() writes, without the Decimal
        term = _whole_tens_term(value)
        if term is not None:
            return term
    number = _number(value)
    if number is not None:
        return "0" if number == 0 else f"#{number.normalize()}"
    if isinstance(value, bool):
        return "?true" if value else "?false"
    if value is None:
        return "?null"
    return f"${value}"


def indexed(value: Any) -> bool:
    """Whether a metadata scalar is an index term: not fractional numbers (durations,
    ratios: nearly all distinct, and rarely searched for by equality)."""
    return not isinstance(value, float | Decimal) or _number(value) == int(value)


def metadata_terms(document: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Index terms of every path through objects to an indexed scalar: `status=#503`."""
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from metadata_terms(value, path + "\x1f")
        elif not isinstance(value, list) and indexed(value):
            yield f"{path}={scalar_term(value)}"


def column_terms(key: str, values: Sequence[Any]) -> set[str]:
    """The terms of one top-level key's values (metadata_terms, a column at a time)."""
    if values and type(values[0]) is str:  # hosts, paths, ids: the common columns
        try:
            distinct = set(values)
        except TypeError:  # an object or an array among them
            distinct = set()
        # No value of another type equals a str: the distinct values' types are all the
        # types, without a pass over every value.
        if distinct and set(map(type, distinct)) == {str}:
            return set(map(f"{key}=$".__add__, distinct))
    kinds = set(map(type, values))
    if kinds == {int}:  # statuses, sizes: scalar_term's common case written here
        prefix = f"{key}=#"
        return {
            prefix + str(value) if value % 10 else f"{key}={scalar_term(value)}"
            for value in set(values)
        }
    if kinds <= {int, float}:  # durations, 12 and 12.5 in one column too: fractional
        # floats are not indexed, and a float that `indexed` takes is whole (is_integer
        # says so without a Decimal). An int and an equal float are kept apart: past
        # 2**53 their terms differ.
        return {
            f"{key}={scalar_term(value)}"
            for kind, value in set(zip(map(type, values), values, strict=True))
            if kind is int or (value.is_integer() and indexed(value))
        }
    terms: set[str] = set()
    for value in values:
        if isinstance(value, dict):
            terms.update(metadata_terms(value, key + "\x1f"))
        elif not isinstance(value, list) and indexed(value):
            terms.add(f"{key}={scalar_term(value)}")
    return terms


# ---------------------------------------------------------------------------------------
# A search's row conditions beyond time, source and level


@dataclass(frozen=True)
class TextCondition:
    """`q` terms and `contains`, as this module decides them."""

    terms: tuple[str, ...]  # q split on whitespace
    contains: str | None

    @classmethod
    def of(cls, q: str | None, contains: str | None) -> TextCondition:
        return cls(tuple(q.split()) if q else (), contains)

    @property
    def empty(self) -> bool:
        return not self.terms and self.contains is None

    def required_words(self) -> list[str]:
        """Words every matching message holds (what a chunk's index is asked for)."""
        return sorted({w for term in self.terms for w in words(term)})

    def hints(self) -> list[str]:
        """ILIKE patterns every matching message satisfies (the hot tier's pre-filter)."""
        found: list[str] = []
        for text in (*self.terms, *([self.contains] if self.contains is not None else [])):
            found += sql_hints(text)
        return sorted(set(found))

    def matcher(self) -> TextMatcher:
        return TextMatcher(
            tuple((fold(t), term_pattern(t)) for t in self.terms),
            None if self.contains is None else fold(self.contains),
        )


@dataclass(frozen=True)
class TextMatcher:
    """Decides whether messages match. Each term is found as a substring first (a scan in
    C), and only where it occurs does its pattern check the word boundaries: a pattern
    that starts with a lookbehind is tried at every character, 25 times slower."""

    terms: tuple[tuple[str, re.Pattern[str]], ...]  # (folded term, its term_pattern)
    needle: str | None

    def __call__(self, message: str) -> bool:
        folded = fold(message)
        if self.needle is not None and self.needle not in folded:
            return False
        return all(term in folded and p.search(folded) for term, p in self.terms)

    def select(self, messages: Sequence[str], chosen: Sequence[int]) -> list[int]:
        """Those of `chosen` (indices into `messages`, ascending) whose message matches.

        One pass over the messages' joined, folded text: `fold` keeps one character for
        one, so an offset in it falls in one message, and NUL (never in a message) is no
        word character, so a match cannot run into the next message."""
        if any("\x00" in term for term, _ in self.terms) or "\x00" in (self.needle or ""):
            return [i for i in chosen if self(messages[i])]
        joined = fold("\x00".join(messages))
        starts = list(accumulate((len(m) + 1 for m in messages), initial=0))
        found: set[int] | None = None
        for term, pattern in self.terms:
            found = _intersect(found, _occurrences(joined, term, starts, pattern))
            if not found:
                return []
        if self.needle is not None:
            found = _intersect(found, _occurrences(joined, self.needle, starts, None))
        if found is None:  # no condition at all
            return list(chosen)
        return [i for i in chosen if i in found]


def _occurrences(
    text: str, term: str, starts: Sequence[int], pattern: re.Pattern[str] | None
) -> set[int]:
    """The indices of the messages (starting at `starts` in `text`) where `term` occurs,
    as `pattern` (if any) requires it at that place."""
    found: set[int] = set()
    at = text.find(term)
    while at >= 0:
        index = bisect_right(starts, at) - 1
        if pattern is None or pattern.match(text, at):
            found.add(index)
            at = text.find(term, starts[index + 1])  # the next message
        else:
            at = text.find(term, at + 1)
    return found


def _intersect(found: set[int] | None, more: set[int]) -> set[int]:
    return more if found is None else found & more


def metadata_matches(
    metadata: Mapping[str, Any],
    required: Mapping[str, Any] | None,
    excluded: Sequence[Mapping[str, Any]],
) -> bool:
    if required is not None and not contains(metadata, required):
        return False
    return not any(contains(metadata, document) for document in excluded)

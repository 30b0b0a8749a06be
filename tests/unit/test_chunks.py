"""The chunk codec round-trips every event exactly; its index holds every term; the
word rules and jsonb containment are those docs/storage.md states."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logkeep.domain import bloom_build, exactjson
from logkeep.domain.bloom import (
    BLOOM_BITS_PER_TERM,
    BLOOM_MIN_BITS,
    filter_one_by_one,
    hashes_of_each,
    may_hold,
    term_hashes,
)
from logkeep.domain.bloom_build import filter_of_terms
from logkeep.domain.chunks import (
    ChunkEvent,
    CorruptChunk,
    EventColumns,
    decode_chunk,
    encode_chunk,
    encode_columns,
    index_terms,
)
from logkeep.domain.matching import (
    FOLD_EXCEPTIONS,
    TextCondition,
    column_terms,
    contains,
    fold,
    metadata_terms,
    scalar_term,
    word_set,
    word_text,
    words,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

NASTY_METADATA: list[dict[str, Any]] = [
    {},
    {"status": 503, "host": "web-1"},
    {"big": 10**30, "exact": Decimal("0.1000000000000000000001"), "f": 12.5, "neg": -0.0},
    {"nested": {"a": [1, "two", None, True, {"x": []}]}, "empty": {}, "list": []},
    {"émoji 🚀": "ünïcode \u2028 line", "q": '"quoted"', "bs": "back\\slash"},
    {"status": "503"},
    {"b": False, "n": None},
    {"nul\x00key": "a\x00b"},  # not from jsonb, which refuses NUL, but encoded all the same
]


def events(count: int = 50, source_id: int = 4) -> list[ChunkEvent]:
    levels = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
    return [
        ChunkEvent(
            id=10**12 + (count - n) * 3,  # ids not in time order
            source_id=source_id,
            timestamp=T0 + timedelta(microseconds=n * 997 // 3),  # some equal timestamps
            level=levels[n % 5],
            message=["plain", "ünïcode Zeitüberschreitung", "x" * 5000, "tab\there", "🚀"][n % 5]
            + f" #{n}",
            metadata=NASTY_METADATA[n % len(NASTY_METADATA)],
            ingested_at=T0 + timedelta(seconds=n // 10),
        )
        for n in range(count)
    ]


def test_a_chunk_round_trips_every_event_exactly_in_time_order() -> None:
    given = events()
    encoded = encode_chunk(given)
    decoded = decode_chunk(4, encoded.payload).events()
    expected = sorted(given, key=lambda e: (e.timestamp, e.id))
    assert decoded == expected
    for got, want in zip(decoded, expected, strict=True):  # types too: 1 is not 1.0
        assert exactjson.dumps(got.metadata, option=orjson.OPT_SORT_KEYS) == exactjson.dumps(
            want.metadata, option=orjson.OPT_SORT_KEYS
        )
        assert list(got.metadata) == sorted(want.metadata, key=lambda k: (len(k.encode()), k))
    assert encoded.events == len(given)
    assert encoded.min_ts == expected[0].timestamp and encoded.max_ts == expected[-1].timestamp
    assert sum(encoded.level_counts) == len(given)


def test_a_chunk_is_much_smaller_than_its_events() -> None:
    given = events(1000)
    encoded = encode_chunk(given)
    plain = sum(len(e.message) + len(exactjson.dumps(e.metadata)) for e in given)
    assert len(encoded.payload) < plain / 5


def test_the_bloom_filter_holds_every_index_term_and_few_others() -> None:
    given = events(300)
    encoded = encode_chunk(given)
    terms = index_terms([e.message for e in given], (e.metadata for e in given))
    assert {"zeitüberschreitung", "status=#503", "status=$503", "host=$web-1"} <= terms
    assert all(may_hold(encoded.term_filter, t) for t in terms)
    strangers = [f"never-{n}" for n in range(2000)]
    assert sum(may_hold(encoded.term_filter, t) for t in strangers) < 2000 * 0.03


@pytest.mark.parametrize("count", [1, 300, 1000])
def test_the_bloom_filter_is_the_one_its_terms_probe_one_by_one(count: int) -> None:
    given = events(count)
    encoded = encode_chunk(given)
    terms = index_terms([e.message for e in given], (e.metadata for e in given))
    # Sized for an estimate of the distinct terms, within 2 % of their number.
    assert abs(encoded.terms - len(terms)) <= 2 + len(terms) // 50
    bits = len(encoded.term_filter) * 8
    assert bits == BLOOM_MIN_BITS or bits // 2 < encoded.terms * BLOOM_BITS_PER_TERM <= bits
    assert encoded.term_filter == filter_one_by_one(terms, bits)


def test_a_filter_of_the_first_version_is_still_probed_with_its_own_hashes() -> None:
    terms = {f"word{n}" for n in range(100)}
    old = filter_one_by_one(terms, 2048, version=1)
    assert all(may_hold(old, t, version=1) for t in terms)
    assert sum(may_hold(old, t, version=2) for t in terms) < 10  # other hashes, other bits
    assert term_hashes("zebra42", 1) != term_hashes("zebra42", 2)
    with pytest.raises(ValueError, match="version 3"):
        term_hashes("zebra42", 3)


@settings(max_examples=300, deadline=None)
@given(
    terms=st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: 0x20 not in b)),
    separators=st.integers(1, 3),
)
def test_the_compiled_loop_hashes_every_term_as_python_hashes_each(
    terms: list[bytes], separators: int
) -> None:
    gap = b" " * separators
    joined = gap + gap.join(terms) + (gap if terms else b"")  # runs of separators too
    encoded, estimate = filter_of_terms([(joined, 0x20)])
    assert encoded == filter_of_terms([], hashes_of_each(terms))[0]
    assert abs(estimate - len(set(terms))) <= 2 + len(set(terms)) // 20
    text = [term.decode("utf-8", "surrogateescape") for term in terms]
    if all(t.encode("utf-8", "surrogatepass") == term for t, term in zip(text, terms, strict=True)):
        assert encoded == filter_one_by_one(text, len(encoded) * 8)


@pytest.fixture(params=["hashed once", "hashed for each pass"])
def hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of filter_of_terms: texts over _HASHED_MAX_TERMS are hashed twice, a
    piece at a time."""
    if request.param == "hashed for each pass":
        monkeypatch.setattr(bloom_build, "_HASHED_MAX_TERMS", 10)
        monkeypatch.setattr(bloom_build, "_PIECE_BYTES", 64)  # many pieces, cut at separators


@pytest.mark.usefixtures("hashing")
def test_long_terms_texts_and_hashes_go_into_one_filter() -> None:
    terms = [bytes([97 + n % 26]) * (n % 90 + 1) for n in range(300)]
    terms += [b"z" * 5000, "ünïcode €".encode()]  # far longer than any other; not ASCII
    words = [b"one", b"two"]
    with_nul = [b"a\x00b"]  # a term holding the NUL separator: hashed one by one
    encoded, estimate = filter_of_terms(
        [(b"\x00".join(terms) + b"\x00", 0), (b" ".join(words), 0x20)], hashes_of_each(with_nul)
    )
    expected = {t.decode() for t in terms + words} | {"a\x00b"}
    assert abs(estimate - len(expected)) <= 8
    assert encoded == filter_one_by_one(expected, len(encoded) * 8)


@pytest.mark.usefixtures("hashing")
def test_a_filter_counts_distinct_terms_not_their_repeats() -> None:
    terms = [f"t{n}".encode() for n in range(5000)]
    encoded, estimate = filter_of_terms([(b" ".join(terms * 7), 0x20)])
    assert abs(estimate - 5000) < 100
    assert encoded == filter_one_by_one({t.decode() for t in terms}, len(encoded) * 8)
    empty = (bytes(BLOOM_MIN_BITS // 8), 0)
    assert filter_of_terms([(b"", 0x20), (b"   ", 0x20)]) == empty
    assert filter_of_terms([]) == empty


def test_chunks_encode_the_same_from_columns_and_from_events() -> None:
    given = sorted(events(200), key=lambda e: (e.timestamp, e.id))
    from_events = encode_chunk(given, ordered=True)
    columns = EventColumns.of_events(given)
    assert encode_columns(columns) == from_events
    shuffled = columns.part(100) + columns.part(0, 100)
    assert shuffled.in_order() == columns
    assert decode_chunk(4, from_events.payload).columns() == columns


@settings(max_examples=400, deadline=None)
@given(
    texts=st.lists(
        st.text(alphabet=st.characters(codec="utf-8"))
        | st.text(alphabet=st.sampled_from("aAzZ09 .-_/\u03a3\u03c2\u0130\u212a\u00e9\u0301\n")),
        max_size=6,
    )
)
def test_the_words_hashed_as_bytes_are_the_words_of_the_text(texts: list[str]) -> None:
    joined = "\x00".join(texts)
    assert set(word_text(joined.encode()).split()) == {w.encode() for w in word_set(texts)}


_SCALARS = (
    st.integers(-(10**20), 10**20)
    | st.sampled_from([0, 10, -10, 200, 10**19, 2**64])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -0.0, 2636.0, 1e22, 0.5])
    | st.text(max_size=3)
    | st.booleans()
    | st.none()
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
)


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(_SCALARS, min_size=1, max_size=8)
    | st.lists(st.integers(-1000, 1000), min_size=1)
    | st.lists(st.floats(-1e6, 1e6).map(lambda f: round(f, 1)), min_size=1)
    # durations written as 12 and 12.5 in one column; 1 and True and 1.0 (one set entry)
    | st.lists(st.integers(-1000, 1000) | st.sampled_from([20.0, 0.5, -3.25]), min_size=1)
    | st.lists(st.sampled_from([1, True, 1.0, 0, False, 0.0]), min_size=1)
    | st.lists(st.sampled_from([{"a": 1}, [1, "x"], "x", 3]), min_size=1)
    # equal values of other types whose terms differ: past 2**53, past 28 digits
    | st.lists(
        st.sampled_from(
            [
                *(2**60, float(2**60), Decimal(2**60), 2**64, float(2**64)),
                *(10**28 + 1, Decimal(10**28 + 1), Decimal("1152921504606846976.0")),
                1.152921504606847e18,
            ]
        ),
        min_size=1,
    )
)
def test_a_columns_terms_are_its_values_terms(values: list[Any]) -> None:
    expected: set[str] = set()
    for value in values:
        expected.update(metadata_terms({"k": value}))
    assert column_terms("k", values) == expected


@settings(max_examples=500, deadline=None)
@given(value=st.integers(-(10**40), 10**40).map(lambda n: n * 10 ** (1 + abs(n) % 30)))
def test_a_whole_tens_term_is_its_normalized_decimal(value: int) -> None:
    expected = "0" if value == 0 else f"#{Decimal(value).normalize()}"
    assert scalar_term(value) == expected


@pytest.mark.parametrize(
    "payload", [b"", b"\x02abc", b"\x01not zstd", b"\x01(\xb5/\xfd\x00\x00\x01\x00\x00"]
)
def test_a_payload_this_codec_did_not_write_is_refused(payload: bytes) -> None:
    with pytest.raises(CorruptChunk):
        decode_chunk(1, payload)


def test_a_chunk_holds_one_source_and_no_nul() -> None:
    with pytest.raises(ValueError, match="one source"):
        encode_chunk(events(3, 1) + events(3, 2))
    bad = events(2)
    bad[0] = ChunkEvent(1, 4, T0, "INFO", "a\x00b", {}, T0)
    with pytest.raises(ValueError, match="NUL"):
        encode_chunk(bad)


def test_words_are_runs_of_letters_and_digits() -> None:
    assert words("GET /api/zebra42 com.acme.PaymentService ORD-123456 user.name@x.io") == [
        "get", "api", "zebra42", "com", "acme", "paymentservice", "ord", "123456", "user",
        "name", "x", "io",
    ]  # fmt: skip
    assert words("order_items München") == ["order", "items", "münchen"]
    assert TextCondition.of("ORD-123456 münchen", None).required_words() == [
        "123456",
        "münchen",
        "ord",
    ]


def test_folding_never_turns_a_non_ascii_character_into_ascii() -> None:
    """What lets ILIKE ... COLLATE "C" pre-filter the hot tier (matching.sql_hints)."""
    found = set()
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char.isascii() or 0xD800 <= code <= 0xDFFF:
            continue
        if any(c.isascii() for c in char.lower()):
            found.add(char)
    assert found == FOLD_EXCEPTIONS
    assert all(len(fold(c)) == 1 for c in map(chr, range(0x3000)) if not ord(c) >= 0xD800)


@pytest.mark.parametrize(
    ("container", "contained", "expected"),
    [
        ({"a": [1, 2]}, {"a": 1}, False),
        ({"a": [1, 2]}, {"a": [1]}, True),
        ({"a": 1.0}, {"a": 1}, True),
        ({"a": Decimal("0.10")}, {"a": 0.1}, True),
        ({"a": Decimal("0.1000000000000000055511151231257827")}, {"a": 0.1}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": "1"}, {"a": 1}, False),
        ({"a": {"b": 1, "c": 2}}, {"a": {}}, True),
        ({"a": [[1, 2]]}, {"a": [1]}, False),
        ({"a": [{"x": 1, "y": 2}]}, {"a": [{"x": 1}]}, True),
        ({"a": [1]}, {"a": []}, True),
        ({"a": {}}, {"a": []}, False),
        ({"a": None}, {"a": None}, True),
        ({}, {"a": None}, False),
    ],
)
def test_containment_is_jsonb_containment(container: Any, contained: Any, expected: bool) -> None:
    assert contains(container, contained) is expected
    if expected:  # what the index is asked for, the chunk's terms hold
        assert set(metadata_terms(contained)) <= set(metadata_terms(container))


# ASCII, separators, Greek sigmas (final sigma depends on context), the fold exceptions
# (dotted I, Kelvin sign) and a combining accent.
_TEXTS = st.text(
    alphabet=st.sampled_from("aAbB1 .-_/:@\u03a3\u03c3\u03c2\u0130\u212aK\u00e9\u0301\n"),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(
    messages=st.lists(_TEXTS, min_size=1, max_size=8),
    q=st.lists(_TEXTS.filter(lambda t: t.strip() != ""), max_size=2),
    substring=st.none() | _TEXTS.filter(bool),
)
def test_a_chunk_selects_the_messages_the_matcher_matches_one_by_one(
    messages: list[str], q: list[str], substring: str | None
) -> None:
    condition = TextCondition.of(" ".join(q) or None, substring)
    if condition.empty:
        return
    matcher = condition.matcher()
    everything = list(range(len(messages)))
    one_by_one = [i for i in everything if matcher(messages[i])]
    assert matcher.select(messages, everything) == one_by_one
    odd = everything[1::2]
    assert matcher.select(messages, odd) == [i for i in one_by_one if i % 2]


@pytest.mark.parametrize(
    ("messages", "q", "expected"),
    [
        (["x declined", "declined", "undeclined declined"], "declined", [0, 1, 2]),
        (["undeclined", "declinedx", "de-clined"], "declined", []),
        (["ord-123456 failed", "ORD-1234567"], "ORD-123456", [0]),
        (["zebra", "42 /api/zebra42"], "zebra42", [1]),
        (["a", "b"], "a b", []),  # both words in one message, never across two
        # Capital sigma lower-cases to the final sigma at a word's end: both fold alike.
        (["\u039f\u0394\u039f\u03a3", "\u212a \u03a3x"], "\u03bf\u03b4\u03bf\u03c2", [0]),
        (["\u212a \u03bf\u03b4\u03bf\u03a3"], "\u03bf\u03b4\u03bf\u03c3", [0]),
    ],
)
def test_a_chunk_selects_whole_words_in_one_message(
    messages: list[str], q: str, expected: list[int]
) -> None:
    matcher = TextCondition.of(q, None).matcher()
    assert matcher.select(messages, range(len(messages))) == expected

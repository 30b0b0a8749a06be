"""A chunk's Bloom filter (version 2, see bloom), built from its texts in compiled loops.
Pure, no I/O.

Compaction hashes every word of every message (34 an event in the benchmark's logs) and
every metadata term. A loop compiled by numba hashes the terms of a text into an array;
another marks each hash once in a sketch, whose unset share estimates how many distinct
terms there are (linear counting: the filter's size), then sets each hash's probes in
the filter. Against numpy passes over the bytes (prefix sums of b[j] * K**j), the Python
share of compaction fell from 16.0-17.2 to 12.7-13.9 us an event on bench ingest's
events. Texts over 8 MB are hashed again for each of the two, 8 MB at a time.

numba loads in half a second and compiles these loops in about two: only the processes
that write chunks import this module (compaction does, in a thread, before its first
slice: chunks.load_filter_builder), and the machine code is cached beside it (or in
NUMBA_CACHE_DIR) for the next process. The cache is keyed on this file: the constants it
takes from bloom are frozen into it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from logkeep.domain.bloom import (
    BLOOM_BITS_PER_TERM,
    BLOOM_HASHES,
    BLOOM_MIN_BITS,
    FMIX1,
    FMIX2,
    POLYNOMIAL_BASE,
    Hashes,
)

_K = np.uint64(POLYNOMIAL_BASE)
_F1 = np.uint64(FMIX1)
_F2 = np.uint64(FMIX2)
_SHIFT = np.uint64(33)
_HIGH = np.uint64(32)
_LOW31 = np.uint64(0x7FFFFFFF)
# Texts of up to 8 MB have their hashes kept (a chunk of 200 KB of messages has 40,000
# words); longer ones are hashed for each pass, 8 MB at a time.
_HASHED_MAX_TERMS = 1 << 22
_PIECE_BYTES = 1 << 23
# The sketch: 4 to 8 bits for each term occurrence, up to this many.
_SKETCH_MAX_BITS = 1 << 24
_SET_BITS = np.array([bin(byte).count("1") for byte in range(256)], np.int64)

Bits = npt.NDArray[np.uint8]


def _compiled(function: Callable[..., Any], **options: Any) -> Any:
    """The function compiled by numba, its machine code cached for the next process where
    numba can write (beside this file, or in NUMBA_CACHE_DIR or the user's cache); else
    compiled anew in each process, rather than failing to import."""
    try:
        return numba.njit(cache=True, nogil=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, **options)(function)


@partial(_compiled, inline="always")
def _hash(value: np.uint64, length: np.uint64) -> np.uint64:
    """Version 2's hash from a term's polynomial and its length (bloom._hash64)."""
    value ^= np.uint64(length)
    value ^= value >> _SHIFT
    value *= _F1
    value ^= value >> _SHIFT
    value *= _F2
    return value ^ (value >> _SHIFT)


@partial(_compiled, inline="always")
def _mark(hashed: np.uint64, bits: Bits, mask: int, probes: int) -> None:
    """Set the probes of one hash: h1 + i*h2 modulo the bits, bit n being bit n % 8 of
    byte n // 8 (log_chunk_may_hold's numbering)."""
    position = np.int64(hashed & _LOW31)
    step = np.int64((hashed >> _HIGH) & _LOW31) | 1
    for _ in range(probes):
        at = position & mask
        bits[at >> 3] |= np.uint8(1 << (at & 7))
        position += step


@_compiled
def _hash_terms(data: Bits, separator: int, hashes: Hashes) -> int:
    """Write the hash of every term of `data` into `hashes`; how many terms."""
    terms = 0
    value = np.uint64(0)
    power = np.uint64(1)
    length = np.uint64(0)
    for i in range(len(data)):
        byte = data[i]
        if byte != separator:
            value += np.uint64(byte) * power
            power *= _K
            length += np.uint64(1)
        elif length:
            hashes[terms] = _hash(value, length)
            terms += 1
            value = np.uint64(0)
            power = np.uint64(1)
            length = np.uint64(0)
    if length:
        hashes[terms] = _hash(value, length)
        terms += 1
    return terms


@_compiled
def _mark_hashes(hashes: Hashes, bits: Bits, mask: int, probes: int) -> None:
    for hashed in hashes:
        _mark(hashed, bits, mask, probes)


@_compiled
def _unset(bits: Bits) -> int:
    unset = 0
    for byte in bits:
        unset += 8 - _SET_BITS[byte]
    return unset


def _filter_bits(terms: int) -> int:
    """The size of a filter for this many distinct terms: a power of two."""
    bits = BLOOM_MIN_BITS
    while bits < terms * BLOOM_BITS_PER_TERM:
        bits *= 2
    if bits > 2**31:
        raise ValueError(f"a chunk of {terms} index terms is too large for a filter")
    return bits


def _hashed(texts: Sequence[tuple[bytes, int]], hashes: Hashes) -> Iterator[Hashes]:
    """`hashes`, then the hashes of every term of `texts`, _PIECE_BYTES of text at a time
    (cut at a separator: every term whole)."""
    yield hashes
    for text, separator in texts:
        data = np.frombuffer(text, np.uint8)
        start = 0
        while start < len(text):
            cut = text.find(separator, start + _PIECE_BYTES)
            stop = len(text) if cut < 0 else cut
            into = np.empty((stop - start) // 2 + 1, np.uint64)  # pages only where written
            yield into[: _hash_terms(data[start:stop], separator, into)]
            start = stop


def filter_of_terms(
    texts: Sequence[tuple[bytes, int]], hashes: Hashes | None = None
) -> tuple[bytes, int]:
    """The version 2 filter of every term of `texts` (each its terms joined by a separator
    byte, repeats allowed) and of `hashes` (terms hashed one by one: bloom.hashes_of_each),
    and how many distinct terms it was sized for: an estimate within a few percent, by
    linear counting (the unset share of a sketch marked with one probe a term).

    The terms are hashed once and their hashes kept, whose sketch and filter are small
    enough to stay in the CPU's cache. Texts that could hold more than _HASHED_MAX_TERMS
    terms (over 8 MB) are hashed again for each of the two instead, a piece at a time:
    memory stays bounded."""
    extra = np.zeros(0, np.uint64) if hashes is None else hashes
    most = len(extra) + sum(len(text) // 2 + 1 for text, _ in texts)  # a term and its end
    kept = list(_hashed(texts, extra)) if most <= _HASHED_MAX_TERMS else None
    occurrences = most if kept is None else sum(map(len, kept))

    def marked(size: int, probes: int) -> Bits:
        bits = np.zeros(size // 8, np.uint8)
        for found in _hashed(texts, extra) if kept is None else kept:
            _mark_hashes(found, bits, size - 1, probes)
        return bits

    size = min(1 << max(8, (4 * occurrences).bit_length()), _SKETCH_MAX_BITS)
    unset = _unset(marked(size, 1))
    # No bit left unset: more distinct terms than the sketch tells, and at most as many as
    # there are (or could be).
    estimate = occurrences if unset == 0 else round(size * math.log(size / unset))
    distinct = min(occurrences, estimate)
    return marked(_filter_bits(distinct), BLOOM_HASHES).tobytes(), distinct


def warm_up() -> None:
    """Load or compile every loop, as the first chunk a process writes would."""
    filter_of_terms([(b"warm up", 0x20)], np.zeros(0, np.uint64))

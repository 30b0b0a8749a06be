"""A chunk's Bloom filter (version 2, see bloom), built from its texts in compiled loops.
Pure, no I/O.

Compaction hashes every word of every message (34 an event in the benchmark's logs) and
every metadata term. A loop compiled by numba hashes the terms of a text into an array;
another marks each hash once in a sketch, whose unset share estimates how many distinct
terms there are (linear counting: the filter's size), then sets each hash's probes in
the filter. Against numpy passes over the bytes (prefix sums of b[j] * K**j), the Python
share of compaction fell from 16.0-17.2 to 12.7-13.9 us an event on bench ingest's
events. Texts over 8 MB are hashed again for each of the two, without an array.

numba loads in half a second and compiles these loops in about two: only the processes
that write chunks import this module (compaction does, in a thread, before its first
slice: chunks.load_filter_builder), and the machine code is cached beside it (or in
NUMBA_CACHE_DIR) for the next process. The cache is keyed on this file: the constants it
takes from bloom are frozen into it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
# Texts of up to 8 MB are hashed once into an array (a chunk of 200 KB of messages has
# 40,000 words); longer ones are hashed for each pass.
_HASHED_MAX_TERMS = 1 << 22
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
def _mark_terms(data: Bits, separator: int, bits: Bits, mask: int, probes: int) -> int:
    """Mark every term of `data` (a run of bytes other than `separator`); how many terms.
    A term's polynomial is sum of b[j] * K**j modulo 2**64 (uint64 arithmetic wraps)."""
    terms = 0
    value = np.uint64(0)
    power = np.uint64(1)
    length = 0
    for byte in data:
        if byte != separator:
            value += np.uint64(byte) * power
            power *= _K
            length += 1
        elif length:
            _mark(_hash(value, length), bits, mask, probes)
            terms += 1
            value = np.uint64(0)
            power = np.uint64(1)
            length = 0
    if length:
        _mark(_hash(value, length), bits, mask, probes)
        terms += 1
    return terms


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


def _hashed(texts: Sequence[tuple[bytes, int]], hashes: Hashes) -> Hashes:
    found = [hashes]
    for text, separator in texts:
        into = np.empty(len(text) // 2 + 1, np.uint64)  # pages only where terms are written
        found.append(into[: _hash_terms(np.frombuffer(text, np.uint8), separator, into)])
    return np.concatenate(found)


def filter_of_terms(
    texts: Sequence[tuple[bytes, int]], hashes: Hashes | None = None
) -> tuple[bytes, int]:
    """The version 2 filter of every term of `texts` (each its terms joined by a separator
    byte, repeats allowed) and of `hashes` (terms hashed one by one: bloom.hashes_of_each),
    and how many distinct terms it was sized for: an estimate within a few percent, by
    linear counting (the unset share of a sketch marked with one probe a term).

    The terms are hashed once into an array, whose sketch and filter are small enough to
    stay in the CPU's cache. Texts that could hold more than _HASHED_MAX_TERMS terms (over
    8 MB) are hashed again for each of the two instead: no array of their hashes."""
    extra = np.zeros(0, np.uint64) if hashes is None else hashes
    most = len(extra) + sum(len(text) // 2 + 1 for text, _ in texts)  # a term and its end
    if most <= _HASHED_MAX_TERMS:
        hashed = _hashed(texts, extra)
        occurrences, marked_texts = len(hashed), []
    else:
        hashed, occurrences = extra, most
        marked_texts = [(np.frombuffer(text, np.uint8), separator) for text, separator in texts]

    def marked(size: int, probes: int) -> Bits:
        bits = np.zeros(size // 8, np.uint8)
        for data, separator in marked_texts:
            _mark_terms(data, separator, bits, size - 1, probes)
        _mark_hashes(hashed, bits, size - 1, probes)
        return bits

    size = min(1 << max(8, (4 * occurrences).bit_length()), _SKETCH_MAX_BITS)
    unset = _unset(marked(size, 1))
    # No bit left unset: more distinct terms than the sketch tells, and at most as many as
    # there are (or could be).
    estimate = occurrences if unset == 0 else round(size * math.log(size / unset))
    distinct = min(occurrences, estimate)
    return marked(_filter_bits(distinct), BLOOM_HASHES).tobytes(), distinct


def warm_up() -> None:
    """Load or compile every loop, as the first chunks a process writes would."""
    filter_of_terms([(b"warm up", 0x20)], np.zeros(0, np.uint64))
    bits = np.zeros(BLOOM_MIN_BITS // 8, np.uint8)
    _mark_terms(np.frombuffer(b"warm up", np.uint8), 0x20, bits, BLOOM_MIN_BITS - 1, 1)

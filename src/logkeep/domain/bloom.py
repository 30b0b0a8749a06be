"""Chunk Bloom filters: whether a chunk may hold a term, answered by PostgreSQL without
reading the chunk (`log_chunk_may_hold` in the schema). Pure, no I/O.

A term's two 31-bit hashes h1, h2 give its BLOOM_HASHES probes h1 + i*h2 (i = 0..3)
modulo the filter's bits, a power of two; bit n is bit n % 8 of byte n // 8, as get_bit
numbers them. Two versions hash terms differently:

1. blake2b of the term's UTF-8, 8 bytes read as two little-endian 32-bit halves: the
   filters of chunks written before migration 0007, in `log_chunks.bloom`. Searches
   still send these hashes for such chunks.
2. (written now, in `log_chunks.term_filter`; such chunks' `bloom` is EVERY_TERM) a
   polynomial of the term's UTF-8 bytes, sum of b[j] * K**j modulo 2**64,
   xor its length in bytes, through MurmurHash3's 64-bit finaliser; h1 is its low 31
   bits, h2 bits 32 to 62 with the lowest bit set. Compaction computes it for every word
   of a chunk at once with numpy, from prefix sums of the bytes times K**j, without a
   Python object per word (docs/storage.md, "What compaction costs"). Some long words
   collide (polynomial hashes modulo 2**64 do, for Thue-Morse strings): in a filter that
   only costs a false positive; do not use it to tell terms apart.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

FILTER_VERSION = 2
# At least BLOOM_BITS_PER_TERM bits a term (sizes are powers of two) and BLOOM_HASHES
# probes: under 0.7 % false positives, with half the work of the 7 probes that 10 bits
# would want. The schema's log_chunk_may_hold probes 4 bits too: change both together.
BLOOM_BITS_PER_TERM = 12
BLOOM_HASHES = 4
BLOOM_MIN_BITS = 256

# A version 1 filter that every probe passes: a process of the earlier version reads and
# checks a chunk that has it instead of skipping the chunk.
EVERY_TERM = b"\xff" * (BLOOM_MIN_BITS // 8)

Hashes = npt.NDArray[np.uint64]

_MASK64 = 2**64 - 1
_MULTIPLIER = 0x9E3779B97F4A7C15  # odd, so it has an inverse modulo 2**64
_INVERSE = pow(_MULTIPLIER, -1, 2**64)
_FMIX1 = 0xFF51AFD7ED558CCD
_FMIX2 = 0xC4CEB9FE1A85EC53
# Bytes hashed in one numpy pass (a piece ends at the first separator after this many):
# its arrays of 8 bytes a byte stay in the CPU's cache. A chunk of 200 KB of messages
# hashed in one piece took three times as long. The tables of K**j and K**-j grow to
# the longest piece.
_PIECE = 1 << 16
# Past this many hashes of repeated terms, keep only the distinct ones (a chunk of huge
# messages of short words must not hold 8 bytes for every word it has).
_DEDUPLICATE_PAST = 1 << 22
_LINEAR_COUNTING_MAX_BITS = 1 << 24


# ---------------------------------------------------------------------------------------
# One term at a time: what a search sends


def _hash64(data: bytes) -> int:
    """Version 2's 64-bit hash of one term (what hashes_of_terms computes in bulk)."""
    value = 0
    power = 1
    for byte in data:
        value = (value + byte * power) & _MASK64
        power = power * _MULTIPLIER & _MASK64
    value ^= len(data)
    value ^= value >> 33
    value = value * _FMIX1 & _MASK64
    value ^= value >> 33
    value = value * _FMIX2 & _MASK64
    return value ^ (value >> 33)


def term_hashes(term: str, version: int = FILTER_VERSION) -> tuple[int, int]:
    """The two 31-bit hashes whose combinations h1 + i*h2 are a term's probes."""
    data = term.encode("utf-8", "surrogatepass")
    if version == 1:
        h1, h2 = struct.unpack("<II", hashlib.blake2b(data, digest_size=8).digest())
    elif version == 2:
        value = _hash64(data)
        h1, h2 = value, value >> 32
    else:
        raise ValueError(f"no Bloom filter version {version}")
    return h1 & 0x7FFFFFFF, (h2 & 0x7FFFFFFF) | 1


def may_hold(bloom: bytes, term: str, version: int = FILTER_VERSION) -> bool:
    """What the schema's log_chunk_may_hold answers, for one term (tests compare them)."""
    bits = len(bloom) * 8
    h1, h2 = term_hashes(term, version)
    for i in range(BLOOM_HASHES):
        position = (h1 + i * h2) % bits
        if not bloom[position >> 3] & (1 << (position & 7)):
            return False
    return True


# ---------------------------------------------------------------------------------------
# Every term of a chunk at once: what compaction writes


def _geometric(ratio: int, size: int) -> Hashes:
    table = np.full(size, ratio, np.uint64)
    table[0] = 1
    return np.cumprod(table, out=table)  # integer arrays wrap modulo 2**64


_powers = _geometric(_MULTIPLIER, 1)
_inverses = _geometric(_INVERSE, 1)


def _tables(length: int) -> tuple[Hashes, Hashes]:
    """K**j and K**-j for j < length at least (the tables of the longest piece yet: up to
    8 MB each after a message that is one word of 1 MB)."""
    global _powers, _inverses
    powers, inverses = _powers, _inverses
    if len(powers) < length:
        size = max(length, 2 * len(powers), 2 * _PIECE)
        powers, inverses = _geometric(_MULTIPLIER, size), _geometric(_INVERSE, size)
        _powers, _inverses = powers, inverses
    return powers, inverses


def _finalise(values: Hashes) -> Hashes:
    values ^= values >> np.uint64(33)
    values *= np.uint64(_FMIX1)
    values ^= values >> np.uint64(33)
    values *= np.uint64(_FMIX2)
    values ^= values >> np.uint64(33)
    return values


def _hash_piece(piece: npt.NDArray[np.uint8], separator: int) -> Hashes:
    size = len(piece)
    in_term = piece != separator
    bounds = np.flatnonzero(in_term[1:] != in_term[:-1]) + 1  # where terms start and end
    if in_term[0]:
        bounds = np.concatenate(([0], bounds))
    if in_term[-1]:
        bounds = np.concatenate((bounds, [size]))
    starts, ends = bounds[0::2], bounds[1::2]
    powers, inverses = _tables(size)
    # prefix[k] = sum of piece[j] * K**j for j < k; a term's sum from its start is the
    # difference of two prefixes divided by K**start (times the inverse of K**start).
    prefix = np.zeros(size + 1, np.uint64)
    np.multiply(piece, powers[:size], out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    values = (prefix[ends] - prefix[starts]) * inverses[starts]
    values ^= (ends - starts).astype(np.uint64)
    return _finalise(values)


def hashes_of_terms(joined: bytes, separator: int) -> Hashes:
    """Version 2's 64-bit hash of every term of `joined`, the terms being the runs of
    bytes other than `separator` (repeats kept, unless there are very many)."""
    data = np.frombuffer(joined, np.uint8)
    found: list[Hashes] = []
    held = 0
    limit = _DEDUPLICATE_PAST
    start = 0
    while start < len(joined):
        stop = start + _PIECE
        if stop < len(joined):
            cut = joined.find(separator, stop)
            stop = len(joined) if cut < 0 else cut
        found.append(_hash_piece(data[start:stop], separator))
        held += len(found[-1])
        if held > limit:
            found = [np.unique(np.concatenate(found))]
            held = len(found[0])
            limit = max(limit, 2 * held)  # many distinct terms: not again at every piece
        start = stop
    return np.concatenate(found) if found else np.zeros(0, np.uint64)


def hashes_of_each(terms: list[bytes]) -> Hashes:
    """Version 2's hash of each term, one at a time (for terms holding any separator)."""
    return np.array([_hash64(term) for term in terms], np.uint64)


def _distinct_terms(h1: npt.NDArray[np.int64], hashes: Hashes) -> int:
    """How many distinct terms `hashes` holds (they repeat: a word per occurrence), by
    linear counting: from the share of a bitmap of 4 to 8 bits per hash left unset.
    An estimate within a few percent; it only sizes the filter."""
    size = min(1 << max(8, (4 * len(h1)).bit_length()), _LINEAR_COUNTING_MAX_BITS)
    seen = np.zeros(size, np.bool_)
    seen[h1 & (size - 1)] = True
    unset = size - int(np.count_nonzero(seen))
    if unset == 0:  # more distinct terms than the bitmap can tell: count them
        return len(np.unique(hashes))
    return round(size * math.log(size / unset))


def filter_of(hashes: Hashes) -> tuple[bytes, int]:
    """The filter of the terms whose version 2 hashes are given (repeats allowed), and
    how many distinct terms it was sized for."""
    # As 64-bit integers, which numpy indexes with as they are (half the time of 32-bit
    # ones on 64-bit machines); h1 + 3*h2 < 2**33 does not overflow them.
    h1 = (hashes & np.uint64(0x7FFFFFFF)).astype(np.int64)
    h2 = ((hashes >> np.uint64(32)) & np.uint64(0x7FFFFFFF)).astype(np.int64) | 1
    terms = _distinct_terms(h1, hashes)
    bits = BLOOM_MIN_BITS
    while bits < terms * BLOOM_BITS_PER_TERM:
        bits *= 2
    if bits > 2**31:
        raise ValueError(f"a chunk of {terms} index terms is too large for a filter")
    mask = bits - 1
    filled = np.zeros(bits, np.bool_)
    probes = h1
    for _ in range(BLOOM_HASHES):
        filled[probes & mask] = True
        probes = probes + h2
    return np.packbits(filled, bitorder="little").tobytes(), terms


def filter_one_by_one(terms: Iterable[str], bits: int, version: int = FILTER_VERSION) -> bytes:
    """The filter of `bits` bits holding `terms`, probe by probe as log_chunk_may_hold
    reads it: what filter_of must equal for version 2, and how version 1 was written."""
    filled = bytearray(bits // 8)
    for term in terms:
        h1, h2 = term_hashes(term, version)
        for i in range(BLOOM_HASHES):
            position = (h1 + i * h2) % bits
            filled[position >> 3] |= 1 << (position & 7)
    return bytes(filled)

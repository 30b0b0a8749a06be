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
   bits, h2 bits 32 to 62 with the lowest bit set. Compaction hashes every word of a
   chunk in a compiled loop (bloom_build), without a Python object per word
   (docs/storage.md, "What compaction costs"). Some long words collide (polynomial
   hashes modulo 2**64 do, for Thue-Morse strings): in a filter that only costs a false
   positive; do not use it to tell terms apart.
"""

from __future__ import annotations

import hashlib
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
# bloom_build's compiled loops freeze these into numba's cache, which is keyed on
# bloom_build.py: change that file with them.
POLYNOMIAL_BASE = 0x9E3779B97F4A7C15  # K: odd
FMIX1 = 0xFF51AFD7ED558CCD  # MurmurHash3's 64-bit finaliser
FMIX2 = 0xC4CEB9FE1A85EC53


# ---------------------------------------------------------------------------------------
# One term at a time: what a search sends


def _hash64(data: bytes) -> int:
    """Version 2's 64-bit hash of one term (what bloom_build computes in bulk)."""
    value = 0
    power = 1
    for byte in data:
        value = (value + byte * power) & _MASK64
        power = power * POLYNOMIAL_BASE & _MASK64
    value ^= len(data)
    value ^= value >> 33
    value = value * FMIX1 & _MASK64
    value ^= value >> 33
    value = value * FMIX2 & _MASK64
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
# Terms one at a time in bulk (those holding a separator); every term of a chunk at once
# is bloom_build's


def hashes_of_each(terms: list[bytes]) -> Hashes:
    """Version 2's hash of each term, one at a time (for terms holding any separator)."""
    return np.array([_hash64(term) for term in terms], np.uint64)


def filter_one_by_one(terms: Iterable[str], bits: int, version: int = FILTER_VERSION) -> bytes:
    """The filter of `bits` bits holding `terms`, probe by probe as log_chunk_may_hold
    reads it: what bloom_build's filters must equal for version 2, and how version 1 was
    written."""
    filled = bytearray(bits // 8)
    for term in terms:
        h1, h2 = term_hashes(term, version)
        for i in range(BLOOM_HASHES):
            position = (h1 + i * h2) % bits
            filled[position >> 3] |= 1 << (position & 7)
    return bytes(filled)

"""Request bodies the shippers compress: gzip, zlib (HTTP's `deflate`) and raw snappy,
each refused past the decompressed-size limit before it is expanded (a small bomb must
not become gigabytes). GELF clients mislabel theirs, so GELF is told by magic bytes."""

from __future__ import annotations

import zlib

import cramjam

from logkeep.domain.ingest import BodyError, decompress

GZIP_MAGIC = b"\x1f\x8b"
# A zlib stream starts with CMF 0x78 (deflate, 32 KiB window) and a check byte.
ZLIB_MAGIC = frozenset({b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"})


def snappy_raw(body: bytes, limit: int) -> bytes:
    """Raw (block) snappy, as Loki's protobuf push and Prometheus remote write use."""
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise BodyError(400, f"body: not valid snappy data ({exc})") from None
    if size > limit:
        raise BodyError(413, f"body: decompressed size is over the {limit}-byte limit")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BodyError(400, f"body: not valid snappy data ({exc})") from None


def inflate_zlib(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise BodyError(413, f"body: decompressed size is over the {limit}-byte limit")
        out += inflater.flush()
    except zlib.error as exc:
        raise BodyError(400, f"body: not valid zlib/deflate data ({exc})") from None
    if not inflater.eof:
        raise BodyError(400, "body: deflate data is truncated")
    return out


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body by its Content-Encoding: identity, gzip, deflate (zlib) or snappy."""
    name = (encoding or "").strip().lower()
    if name == "deflate":
        return inflate_zlib(body, limit)
    if name == "snappy":
        return snappy_raw(body, limit)
    return decompress(body, encoding, limit)


def sniffed(body: bytes, limit: int) -> bytes:
    """gzip, zlib or plain, told by the first bytes whatever the labels say (GELF)."""
    if body.startswith(GZIP_MAGIC):
        return decompress(body, "gzip", limit)
    if body[:2] in ZLIB_MAGIC:
        return inflate_zlib(body, limit)
    if len(body) > limit:
        raise BodyError(413, f"body: over the {limit}-byte limit")
    return body

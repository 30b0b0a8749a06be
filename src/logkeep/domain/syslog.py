"""Syslog: RFC 5424 and RFC 3164 messages, and RFC 6587 framing over TCP. Pure, no I/O.

RFC 3164 timestamps carry neither a year nor a zone: the year is the one that puts the
time closest to now (a December message read in January is last year's), and the zone
is taken as UTC, which is what a server that logs in UTC sends; a sender in another zone
is off by its offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from logkeep.domain.entry import Level
from logkeep.domain.parsers import (
    MONTHS,
    LineParseError,
    ParsedLine,
    read_timestamp,
    typed_text,
)

FACILITIES = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    *(f"local{n}" for n in range(8)),
)
# emerg, alert, crit, err, warning, notice, info, debug
_SEVERITY_LEVELS = (
    Level.FATAL,
    Level.FATAL,
    Level.FATAL,
    Level.ERROR,
    Level.WARN,
    Level.INFO,
    Level.INFO,
    Level.DEBUG,
)
USER, NOTICE = 1, 5  # what a message without PRI is taken to be (RFC 3164 4.3.3)


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    facility: int
    severity: int
    timestamp: datetime | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: dict[str, dict[str, str]]  # SD-ID -> params
    message: str
    rfc: Literal["5424", "3164"]


def severity_level(severity: int) -> Level:
    if not 0 <= severity <= 7:
        raise ValueError(f"syslog severity must be 0 to 7, got {severity}")
    return _SEVERITY_LEVELS[severity]


def to_parsed_line(msg: SyslogMessage) -> ParsedLine:
    """The message as an event; header fields that are absent are left out of metadata.
    Structured-data values are typed as logfmt values are (`eventID="1011"` is 1011);
    the header fields stay text."""
    metadata: dict[str, Any] = {
        "facility": FACILITIES[msg.facility],
        "severity": msg.severity,
    }
    for key, value in (
        ("hostname", msg.hostname),
        ("app_name", msg.app_name),
        ("procid", msg.procid),
        ("msgid", msg.msgid),
    ):
        if value is not None:
            metadata[key] = value
    if msg.structured_data:
        metadata["structured_data"] = {
            sd_id: {name: typed_text(value) for name, value in params.items()}
            for sd_id, params in msg.structured_data.items()
        }
    metadata["rfc"] = msg.rfc
    return ParsedLine(msg.message, msg.timestamp, severity_level(msg.severity), metadata)


_PRI = re.compile(r"<([0-9]{1,3})>")


def parse_syslog(line: str, *, now: datetime | None = None) -> SyslogMessage:
    """An RFC 5424 message (`<PRI>1 ...`) or else an RFC 3164 one, read as leniently as
    relays do: no PRI means user.notice. `now` places RFC 3164 times in a year."""
    text = line.rstrip("\r\n\x00")  # trailers a UDP sender may leave on
    if not text.strip():
        raise LineParseError("empty syslog message")
    facility, severity, pos = USER, NOTICE, 0
    pri = _PRI.match(text)
    if pri is not None and int(pri[1]) <= 191:
        facility, severity = divmod(int(pri[1]), 8)
        pos = pri.end()
        if text.startswith("1 ", pos):
            return _parse_5424(text[pos + 2 :], facility, severity)
    return _parse_3164(text[pos:], facility, severity, now)


# -- RFC 5424 ----------------------------------------------------------------------------

_HEADER_FIELDS = (("HOSTNAME", 255), ("APP-NAME", 48), ("PROCID", 128), ("MSGID", 32))
# SD-ELEMENT = "[" SD-ID *(SP PARAM-NAME "=" %d34 PARAM-VALUE %d34) "]"; in a value `"`,
# `\` and `]` are escaped with a backslash. Possessive: no backtracking on long lines.
_SD_NAME = r'[^ =\]"]{1,32}'
_SD_VALUE = r'"((?:[^"\\]++|\\.)*+)"'
_SD_ELEMENT = re.compile(rf"\[({_SD_NAME})((?: {_SD_NAME}={_SD_VALUE})*+)\]", re.DOTALL)
_SD_PARAM = re.compile(rf"({_SD_NAME})={_SD_VALUE}", re.DOTALL)
_SD_ESCAPE = re.compile(r'\\(["\\\]])')


def _parse_5424(text: str, facility: int, severity: int) -> SyslogMessage:
    """TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG], after `<PRI>1 `."""
    parts = text.split(" ", 5)
    if len(parts) < 5:
        raise LineParseError("RFC 5424 header is incomplete")
    stamp = parts[0]
    fields: list[str | None] = []
    for (name, limit), value in zip(_HEADER_FIELDS, parts[1:5], strict=True):
        if not value or len(value) > limit:
            raise LineParseError(f"RFC 5424 {name} must be 1 to {limit} characters")
        fields.append(None if value == "-" else value)
    timestamp = None if stamp == "-" else read_timestamp(stamp, "RFC 5424 TIMESTAMP")
    structured_data, message = _structured_data(parts[5] if len(parts) == 6 else "")
    if message.startswith("\ufeff"):  # the BOM that marks MSG as UTF-8
        message = message[1:]
    hostname, app_name, procid, msgid = fields
    return SyslogMessage(
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        message,
        "5424",
    )


def _structured_data(text: str) -> tuple[dict[str, dict[str, str]], str]:
    """(SD-ID -> params, MSG) from what follows MSGID. A sender that leaves out the
    STRUCTURED-DATA field, or writes it malformed, loses no text: it all becomes MSG."""
    if text == "-" or text.startswith("- "):
        return {}, text[2:]
    data: dict[str, dict[str, str]] = {}
    pos = 0
    while text.startswith("[", pos):
        element = _SD_ELEMENT.match(text, pos)
        if element is None:
            return {}, text
        params = data.setdefault(element[1], {})  # a repeated SD-ID adds to the first
        for name, value in _SD_PARAM.findall(element[2]):
            params[name] = _SD_ESCAPE.sub(r"\1", value) if "\\" in value else value
        pos = element.end()
    if pos == len(text):
        return data, ""
    if pos == 0 or text[pos] != " ":
        return {}, text
    return data, text[pos + 1 :]


# -- RFC 3164 ----------------------------------------------------------------------------

# `Mmm dd hh:mm:ss` (day space-padded), as in the RFC; some senders add a year or
# fractions. rsyslog's forwarding template writes RFC 3339 instead.
_BSD_STAMP = re.compile(
    r"([A-Za-z]{3}) {1,2}([0-9]{1,2}) (?:([0-9]{4}) )?([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))?(?: |\Z)"
)
_ISO_STAMP = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})?)(?: |\Z)"
)
# TAG[PID]: or TAG: (the colon is sometimes missing after [PID]).
_TAG = re.compile(r"([^\s\[\]:]{1,48})(?:\[([^\]\s]{0,128})\]:?|:)(?: |\Z)")


def _parse_3164(text: str, facility: int, severity: int, now: datetime | None) -> SyslogMessage:
    """[TIMESTAMP HOSTNAME ]TAG[PID]: MSG; what cannot be read as a header is MSG."""
    timestamp = None
    pos = 0
    if bsd := _BSD_STAMP.match(text):
        timestamp = _bsd_time(bsd, now)
        pos = bsd.end()
    elif iso := _ISO_STAMP.match(text):
        timestamp = read_timestamp(iso[1], "RFC 3164 TIMESTAMP")
        pos = iso.end()
    hostname = None
    if timestamp is not None:
        # The word after the time is the hostname, unless it is already the tag: local
        # senders leave the hostname out.
        end = text.find(" ", pos)
        word = text[pos:] if end < 0 else text[pos:end]
        if word and not word.endswith((":", "]")):
            hostname = word
            pos = len(text) if end < 0 else end + 1
    app_name = procid = None
    if tag := _TAG.match(text, pos):
        app_name, procid = tag[1], tag[2] or None
        pos = tag.end()
    return SyslogMessage(
        facility, severity, timestamp, hostname, app_name, procid, None, {}, text[pos:], "3164"
    )


def _bsd_time(stamp: re.Match[str], now: datetime | None) -> datetime:
    month = MONTHS.get(stamp[1].title())
    if month is None:
        raise LineParseError(f"RFC 3164 TIMESTAMP has no month {stamp[1]!r}")
    day, hour, minute, second = (int(stamp[i]) for i in (2, 4, 5, 6))
    micros = int(stamp[7].ljust(6, "0")) if stamp[7] else 0
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    years = [int(stamp[3])] if stamp[3] else [now.year - 1, now.year, now.year + 1]
    candidates: list[datetime] = []
    for year in years:
        try:
            candidates.append(datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC))
        except ValueError:  # Feb 29 outside a leap year, Nov 31, 25:00...
            continue
    if not candidates:
        raise LineParseError(f"RFC 3164 TIMESTAMP {stamp[0].strip()!r} is not a valid date")
    reference = now
    return min(candidates, key=lambda c: abs(c - reference))


# -- TCP framing (RFC 6587) --------------------------------------------------------------


class TruncatedFrame(bytes):
    """A frame cut to the framer's max_frame_bytes, or cut short by the end of the
    connection. It is bytes, so callers that do not care need not know; callers that do
    test `isinstance(frame, TruncatedFrame)`."""

    __slots__ = ()


# Octet counting: MSG-LEN SP, the length in at most 10 digits.
_OCTET_COUNT = re.compile(rb"([0-9]{1,10}) ")
# Non-transparent framing ends a frame at LF (CRLF: the CR is dropped). NUL ends one only
# when the next frame starts right after it, or when it is the last byte received: a NUL
# inside a message then stays in it (and the message is refused whole, visibly) instead
# of cutting it in two.
_TRAILER = re.compile(rb"\n|\x00(?=<)|\x00\Z")
_DIGITS = frozenset(b"0123456789")


class OctetFramer:
    """Incremental decoder for syslog over TCP (RFC 6587): octet counting ("<len> <msg>")
    and non-transparent framing (LF-terminated; also accept NUL and CRLF). Auto-detected
    per frame: a frame starting with a digit is octet-counted.

    Frames longer than `max_frame_bytes` keep their first `max_frame_bytes` and come back
    as TruncatedFrame; `truncated` counts them. Memory stays bounded by about
    `max_frame_bytes` plus the data of one `feed`: a length over ten times the maximum,
    or digits that are no length, make the frame a line instead.
    """

    def __init__(self, max_frame_bytes: int = 64 * 1024) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        self.truncated = 0
        self._buf = bytearray()
        self._count: int | None = None  # the declared length of the frame being read
        self._skip = 0  # bytes still to drop of an over-long counted frame
        self._dropping_line = False  # dropping the rest of an over-long line

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Complete frames, without trailers; empty frames are skipped."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        limit = self.max_frame_bytes
        pos = 0
        while pos < len(buf):
            if self._skip:
                step = min(self._skip, len(buf) - pos)
                self._skip -= step
                pos += step
            elif self._count is not None:
                want = min(self._count, limit)
                if len(buf) - pos < want:
                    break
                self._emit(frames, bytes(buf[pos : pos + want]), cut=self._count > limit)
                self._skip = self._count - want
                self._count = None
                pos += want
            elif self._dropping_line:
                trailer = _TRAILER.search(buf, pos)
                if trailer is None:
                    pos = len(buf)
                else:
                    self._dropping_line = False
                    pos = trailer.end()
            elif buf[pos] in _DIGITS and (header := self._octet_header(buf, pos)) is not None:
                if header < 0:
                    break  # the length is still arriving
                self._count = int(buf[pos : header - 1])
                pos = header
            else:
                trailer = _TRAILER.search(buf, pos)
                if trailer is None:
                    if len(buf) - pos <= limit:
                        break  # the rest of the line is still arriving
                    self._emit(frames, bytes(buf[pos : pos + limit]), cut=True)
                    self._dropping_line = True
                    pos += limit
                else:
                    frame = bytes(buf[pos : min(trailer.start(), pos + limit)])
                    self._emit(frames, frame.rstrip(b"\r"), cut=trailer.start() - pos > limit)
                    pos = trailer.end()
        del buf[:pos]
        return frames

    def _octet_header(self, buf: bytearray, pos: int) -> int | None:
        """Where the frame after the length at `pos` starts; -1 while the length may still
        be arriving; None when this is no usable length (the frame is then a line)."""
        header = _OCTET_COUNT.match(buf, pos)
        if header is None:
            rest = buf[pos:]
            return -1 if len(rest) <= 10 and rest.isdigit() else None
        return header.end() if int(header[1]) <= 10 * self.max_frame_bytes else None

    def flush(self) -> list[bytes]:
        """At the end of the connection: the last frame if it had no trailer. A counted
        frame that got fewer bytes than it declared comes back as a TruncatedFrame."""
        rest = bytes(self._buf[: self.max_frame_bytes])
        counted = self._count is not None
        self._buf.clear()
        self._count, self._skip, self._dropping_line = None, 0, False
        frames: list[bytes] = []
        self._emit(frames, rest if counted else rest.rstrip(b"\r\x00"), cut=counted and bool(rest))
        return frames

    def _emit(self, frames: list[bytes], frame: bytes, *, cut: bool) -> None:
        if cut:
            self.truncated += 1
            frames.append(TruncatedFrame(frame))
        elif frame:
            frames.append(frame)

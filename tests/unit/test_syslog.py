"""Syslog messages and TCP framing: pure, against bytes real senders wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from logkeep.domain.entry import Level
from logkeep.domain.parsers import LineParseError, ParsedLine
from logkeep.domain.syslog import (
    FACILITIES,
    OctetFramer,
    SyslogMessage,
    TruncatedFrame,
    parse_syslog,
    severity_level,
    to_parsed_line,
)

NOW = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)

# Captured from util-linux 2.38.1 `logger` with a throwaway listener, byte for byte.
# logger --tcp --rfc5424 --sd-id zoo@123 --sd-param tiger="hungry" -t myapp -p local0.err
LOGGER_TCP_5424 = (
    b'<131>1 2026-11-26T16:36:27.961704+00:00 vm myapp - - [timeQuality tzKnown="1" '
    b'isSynced="0"][zoo@123 tiger="hungry"] hello world\n'
)
# ... the same with --octet-count and --sd-param quote="a\"b\]c\\d"
LOGGER_TCP_5424_OCTET = (
    b'146 <131>1 2026-11-26T16:36:27.965718+00:00 vm myapp - - [timeQuality tzKnown="1" '
    b'isSynced="0"][zoo@123 tiger="hungry" quote="a\\"b\\]c\\\\d"] hello world'
)
# logger --udp --rfc3164 -t myapp "hi"
LOGGER_UDP_3164 = b"<13>Nov 26 16:36:27 vm myapp: hi"
# logger --udp --rfc5424 -t myapp -p daemon.warning --msgid ID47 "disk almost full"
LOGGER_UDP_5424_MSGID = (
    b"<28>1 2026-11-26T16:36:27.969257+00:00 vm myapp - ID47 "
    b'[timeQuality tzKnown="1" isSynced="0"] disk almost full'
)
# logger --udp --rfc5424=notq,notime -t myapp "no time"
LOGGER_UDP_5424_NOTIME = b"<13>1 - vm myapp - - - no time"
# logger --udp --rfc5424=nohost -i -t myapp -p auth.crit "no host"
LOGGER_UDP_5424_NOHOST = (
    b"<34>1 2026-11-26T16:36:27.972438+00:00 - myapp 7241 - "
    b'[timeQuality tzKnown="1" isSynced="0"] no host'
)
# logger --tcp --rfc3164 -i -t myapp -p kern.emerg "with pid" (logger turns kern into user)
LOGGER_TCP_3164_PID = b"<8>Nov 26 16:36:27 vm myapp[7243]: with pid\n"
# logger --tcp --rfc3164 --octet-count -t myapp "counted 3164"
LOGGER_TCP_3164_OCTET = b"42 <13>Nov 26 16:36:27 vm myapp: counted 3164"
# logger --udp --rfc5424 -t myapp "unicode: héllo ✓"
LOGGER_UDP_5424_UTF8 = (
    b"<13>1 2026-11-26T16:36:27.979272+00:00 vm myapp - - "
    b'[timeQuality tzKnown="1" isSynced="0"] unicode: h\xc3\xa9llo \xe2\x9c\x93'
)
# printf 'first line\nsecond line\n' | logger --tcp --rfc5424 --octet-count -t app: one
# connection, two frames, no separator between them.
LOGGER_TCP_OCTET_STREAM = (
    b"99 <14>1 2026-11-26T16:36:32.295256+00:00 vm app - - "
    b'[timeQuality tzKnown="1" isSynced="0"] first line'
    b"100 <14>1 2026-11-26T16:36:32.295337+00:00 vm app - - "
    b'[timeQuality tzKnown="1" isSynced="0"] second line'
)
# printf 'first line\nsecond line\n' | logger --tcp --rfc3164 -t app -p user.debug
LOGGER_TCP_LF_STREAM = (
    b"<15>Nov 26 16:36:32 vm app: first line\n<15>Nov 26 16:36:32 vm app: second line\n"
)
TIME_QUALITY = {"timeQuality": {"tzKnown": "1", "isSynced": "0"}}


def frame_text(frame: bytes) -> str:
    return frame.decode("utf-8")


def syslog(line: str | bytes, now: datetime = NOW) -> SyslogMessage:
    text = line.decode("utf-8") if isinstance(line, bytes) else line
    return parse_syslog(text, now=now)


# --- what logger sends ----------------------------------------------------------------


def test_logger_tcp_rfc5424_with_structured_data() -> None:
    msg = syslog(LOGGER_TCP_5424)
    assert msg == SyslogMessage(
        facility=16,
        severity=3,
        timestamp=datetime(2026, 11, 26, 16, 36, 27, 961704, tzinfo=UTC),
        hostname="vm",
        app_name="myapp",
        procid=None,
        msgid=None,
        structured_data={**TIME_QUALITY, "zoo@123": {"tiger": "hungry"}},
        message="hello world",
        rfc="5424",
    )


def test_logger_octet_counted_rfc5424_with_escaped_param_values() -> None:
    framer = OctetFramer()
    [frame] = framer.feed(LOGGER_TCP_5424_OCTET)
    assert len(frame) == 146 and framer.buffered == 0
    msg = syslog(frame)
    assert msg.structured_data["zoo@123"] == {"tiger": "hungry", "quote": 'a"b]c\\d'}
    assert msg.message == "hello world"
    assert (msg.facility, msg.severity) == (16, 3)


def test_logger_udp_rfc3164() -> None:
    msg = syslog(LOGGER_UDP_3164)
    assert msg == SyslogMessage(
        facility=1,
        severity=5,
        timestamp=datetime(2026, 11, 26, 16, 36, 27, tzinfo=UTC),
        hostname="vm",
        app_name="myapp",
        procid=None,
        msgid=None,
        structured_data={},
        message="hi",
        rfc="3164",
    )


def test_logger_rfc5424_msgid_nil_time_nil_host() -> None:
    with_msgid = syslog(LOGGER_UDP_5424_MSGID)
    assert (with_msgid.facility, with_msgid.severity, with_msgid.msgid) == (3, 4, "ID47")
    assert with_msgid.message == "disk almost full"
    no_time = syslog(LOGGER_UDP_5424_NOTIME)
    assert (no_time.timestamp, no_time.hostname, no_time.structured_data) == (None, "vm", {})
    assert no_time.message == "no time"
    no_host = syslog(LOGGER_UDP_5424_NOHOST)
    assert (no_host.hostname, no_host.app_name, no_host.procid) == (None, "myapp", "7241")
    assert (no_host.facility, no_host.severity) == (4, 2)


def test_logger_rfc3164_with_pid_and_octet_counting() -> None:
    framer = OctetFramer()
    [frame] = framer.feed(LOGGER_TCP_3164_PID)
    msg = syslog(frame)
    assert (msg.facility, msg.severity, msg.app_name, msg.procid) == (1, 0, "myapp", "7243")
    assert msg.message == "with pid"
    [counted] = framer.feed(LOGGER_TCP_3164_OCTET)
    assert counted == b"<13>Nov 26 16:36:27 vm myapp: counted 3164"
    assert syslog(counted).message == "counted 3164"


def test_logger_utf8_message() -> None:
    assert syslog(LOGGER_UDP_5424_UTF8).message == "unicode: héllo ✓"


def test_logger_streams_split_into_frames() -> None:
    frames = OctetFramer().feed(LOGGER_TCP_OCTET_STREAM)
    assert [syslog(f).message for f in frames] == ["first line", "second line"]
    frames = OctetFramer().feed(LOGGER_TCP_LF_STREAM)
    assert [syslog(f).message for f in frames] == ["first line", "second line"]
    assert {syslog(f).severity for f in frames} == {7}


# --- RFC 5424 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "timestamp"),
    [
        # The RFC's own examples.
        ("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed",
         datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)),
        ("<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - do-nuts",
         datetime(2003, 8, 24, 12, 14, 15, 3, tzinfo=UTC)),
        ("<13>1 1985-04-12T23:20:50.52+05:30 h a - - - x",
         datetime(1985, 4, 12, 17, 50, 50, 520000, tzinfo=UTC)),
        ("<13>1 1970-01-01T00:00:00Z h a - - - x", datetime(1970, 1, 1, tzinfo=UTC)),
        ("<13>1 2300-01-01T00:00:00.1+00:00 h a - - - x",
         datetime(2300, 1, 1, 0, 0, 0, 100000, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_rfc5424_timestamps_with_fractions_and_offsets(line: str, timestamp: datetime) -> None:
    msg = syslog(line)
    assert msg.timestamp == timestamp
    assert msg.timestamp is not None and msg.timestamp.tzinfo is UTC
    assert msg.rfc == "5424"


def test_rfc5424_example_with_bom_and_structured_data() -> None:
    msg = syslog(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        '[examplePriority@32473 class="high"] \ufeffAn application event log entry...'
    )
    assert msg.structured_data == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"},
    }
    assert msg.message == "An application event log entry..."
    assert (msg.facility, msg.severity, msg.msgid) == (20, 5, "ID47")


@pytest.mark.parametrize(
    ("sd_and_msg", "structured_data", "message"),
    [
        ('[a@1 v="x\\"y"] m', {"a@1": {"v": 'x"y'}}, "m"),
        ('[a@1 v="back\\\\slash"] m', {"a@1": {"v": "back\\slash"}}, "m"),
        ('[a@1 v="close\\]"] m', {"a@1": {"v": "close]"}}, "m"),
        ('[a@1 v="other\\n"] m', {"a@1": {"v": "other\\n"}}, "m"),  # kept as written
        ('[a@1 v="has ] and [ inside"] m', {"a@1": {"v": "has ] and [ inside"}}, "m"),
        ('[a@1 v=""][b@1] m', {"a@1": {"v": ""}, "b@1": {}}, "m"),
        ('[a@1 x="1"][a@1 y="2"]', {"a@1": {"x": "1", "y": "2"}}, ""),
        ("-", {}, ""),
        ("- ", {}, ""),
        ("", {}, ""),
        # Malformed structured data or none at all: the text is kept as the message.
        ('[a@1 v="unterminated] m', {}, '[a@1 v="unterminated] m'),
        ("[a@1]junk", {}, "[a@1]junk"),
        ("plain message", {}, "plain message"),
        ("-dash", {}, "-dash"),
    ],
)
def test_rfc5424_structured_data(
    sd_and_msg: str, structured_data: dict[str, dict[str, str]], message: str
) -> None:
    msg = syslog(f"<14>1 2024-05-01T12:00:00Z host app 12 - {sd_and_msg}")
    assert (msg.structured_data, msg.message) == (structured_data, message)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("<13>1 2024-05-01T12:00:00Z host app", "RFC 5424 header is incomplete"),
        ("<13>1 yesterday host app - - - m", "RFC 5424 TIMESTAMP: 'yesterday' is not an RFC"),
        ("<13>1 2024-05-01T25:00:00Z host app - - - m", "RFC 5424 TIMESTAMP"),
        ("<13>1 - " + "h" * 256 + " app - - - m", "RFC 5424 HOSTNAME must be 1 to 255"),
        ("<13>1 - h " + "a" * 49 + " - - - m", "RFC 5424 APP-NAME must be 1 to 48"),
        ("<13>1 - h a - " + "i" * 33 + " - m", "RFC 5424 MSGID must be 1 to 32"),
        ("<13>1 -  a - - - m", "RFC 5424 HOSTNAME must be 1 to 255"),
        ("", "empty syslog message"),
        ("\r\n", "empty syslog message"),
        ("\x00", "empty syslog message"),
    ],
)
def test_unparseable_messages(line: str, reason: str) -> None:
    with pytest.raises(LineParseError) as info:
        syslog(line)
    assert reason in str(info.value)
    assert len(str(info.value)) < 200


# --- RFC 3164 -------------------------------------------------------------------------


def test_rsyslog_forwarded_line() -> None:
    msg = syslog("<38>Nov 26 16:22:49 web-01 sshd[1234]: Accepted publickey for root\n")
    assert msg == SyslogMessage(
        facility=4,
        severity=6,
        timestamp=datetime(2026, 11, 26, 16, 22, 49, tzinfo=UTC),
        hostname="web-01",
        app_name="sshd",
        procid="1234",
        msgid=None,
        structured_data={},
        message="Accepted publickey for root",
        rfc="3164",
    )


@pytest.mark.parametrize(
    ("line", "hostname", "app_name", "procid", "message"),
    [
        ("<13>Nov  6 01:02:03 web-01 cron[9]: job", "web-01", "cron", "9", "job"),
        ("<13>Nov 6 01:02:03 web-01 cron: job", "web-01", "cron", None, "job"),
        ("<13>Nov 26 16:22:49 sshd[1234]: local, no host", None, "sshd", "1234", "local, no host"),
        ("<13>Nov 26 16:22:49 kernel: no host, no pid", None, "kernel", None, "no host, no pid"),
        ("<13>Nov 26 16:22:49 web-01 postfix/smtpd[77]: x", "web-01", "postfix/smtpd", "77", "x"),
        ("<13>Nov 26 16:22:49 web-01 app[3] no colon", "web-01", "app", "3", "no colon"),
        ("<13>Nov 26 16:22:49 web-01 just text", "web-01", None, None, "just text"),
        ("<13>Nov 26 16:22:49 web-01", "web-01", None, None, ""),
        ("<13>Nov 26 16:22:49 web-01 app:", "web-01", "app", None, ""),
        ("<13>myapp: no timestamp", None, "myapp", None, "no timestamp"),
        ("<13>no header at all", None, None, None, "no header at all"),
        ("<13>Error: words are not hosts without a time", None, "Error", None,
         "words are not hosts without a time"),
    ],
)  # fmt: skip
def test_rfc3164_header_variants(
    line: str, hostname: str | None, app_name: str | None, procid: str | None, message: str
) -> None:
    msg = syslog(line)
    assert (msg.hostname, msg.app_name, msg.procid, msg.message) == (
        hostname,
        app_name,
        procid,
        message,
    )
    assert msg.rfc == "3164"


@pytest.mark.parametrize(
    ("line", "facility", "severity"),
    [
        ("Nov 26 16:22:49 web-01 sshd[1]: from a file, no PRI", 1, 5),
        ("<0>Nov 26 16:22:49 h a: kern.emerg", 0, 0),
        ("<191>Nov 26 16:22:49 h a: local7.debug", 23, 7),
        ("<192>Nov 26 16:22:49 h a: PRI out of range", 1, 5),
        ("<abc>text", 1, 5),
        ("<13 unclosed", 1, 5),
    ],
)
def test_pri_and_missing_pri(line: str, facility: int, severity: int) -> None:
    msg = syslog(line)
    assert (msg.facility, msg.severity) == (facility, severity)


def test_missing_pri_keeps_the_whole_text() -> None:
    assert syslog("<192>hello").message == "<192>hello"
    assert syslog("Nov 26 16:22:49 web-01 sshd[1]: from a file").hostname == "web-01"


@pytest.mark.parametrize(
    ("stamp", "now", "expected"),
    [
        ("Nov 26 16:22:49", NOW, datetime(2026, 11, 26, 16, 22, 49, tzinfo=UTC)),
        # Read just after New Year: December was last year.
        ("Dec 31 23:59:58", datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC),
         datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)),
        # A sender's clock a little ahead, at New Year's Eve: January is next year.
        ("Jan  1 00:00:03", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
         datetime(2027, 1, 1, 0, 0, 3, tzinfo=UTC)),
        # Feb 29 exists only in the leap year among the three candidates.
        ("Feb 29 12:00:00", datetime(2027, 3, 1, tzinfo=UTC),
         datetime(2028, 2, 29, 12, tzinfo=UTC)),
        ("Feb 29 12:00:00", datetime(2024, 3, 1, tzinfo=UTC),
         datetime(2024, 2, 29, 12, tzinfo=UTC)),
        # Some senders add the year, or fractions of a second.
        ("Nov 26 2019 16:22:49", NOW, datetime(2019, 11, 26, 16, 22, 49, tzinfo=UTC)),
        ("Nov 26 16:22:49.125", NOW, datetime(2026, 11, 26, 16, 22, 49, 125000, tzinfo=UTC)),
        # A naive `now` is UTC.
        ("Nov 26 16:22:49", NOW.replace(tzinfo=None), datetime(2026, 11, 26, 16, 22, 49,
                                                                tzinfo=UTC)),
    ],
)  # fmt: skip
def test_rfc3164_year_is_the_one_nearest_now(stamp: str, now: datetime, expected: datetime) -> None:
    assert syslog(f"<13>{stamp} host app: m", now=now).timestamp == expected


def test_rfc3164_without_now_uses_the_clock() -> None:
    stamp = datetime.now(UTC).replace(microsecond=0)
    msg = parse_syslog(f"<13>{stamp:%b %d %H:%M:%S} host app: m")
    assert msg.timestamp == stamp


def test_rfc3164_with_an_rfc3339_timestamp() -> None:
    msg = syslog("<13>2024-11-26T16:22:49.5+01:00 web-01 app[4]: iso time")
    assert msg.timestamp == datetime(2024, 11, 26, 15, 22, 49, 500000, tzinfo=UTC)
    assert (msg.hostname, msg.app_name, msg.procid, msg.message) == (
        "web-01",
        "app",
        "4",
        "iso time",
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("<13>Feb 30 12:00:00 host app: m", "RFC 3164 TIMESTAMP 'Feb 30 12:00:00' is not a valid"),
        ("<13>Nov 26 25:00:00 host app: m", "is not a valid date"),
        ("<13>Foo 26 16:22:49 host app: m", "RFC 3164 TIMESTAMP has no month 'Foo'"),
        ("<13>2024-13-01T00:00:00Z host app: m", "RFC 3164 TIMESTAMP: '2024-13-01T00:00:00Z'"),
    ],
)
def test_rfc3164_bad_timestamps(line: str, reason: str) -> None:
    with pytest.raises(LineParseError, match="RFC 3164") as info:
        syslog(line)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "line",
    [
        "x" * 1_000_000,
        "<13>" + "x" * 1_000_000,
        "<13>1 - h a - - - " + "x" * 1_000_000,
        "<13>1 - h a - - [" + "a" * 1_000_000,
        '<13>1 - h a - - [a@1 v="' + "\\" * 1_000_000,
        "<13>Nov 26 16:22:49 " + "h" * 1_000_000,
        "<13>1 - h a - - - nul\x00inside",
        "<13>Nov 26 16:22:49 h a: \udcff\udcfe",
        "\ufeff",
        "<" * 100_000,
        "[" * 100_000,
    ],
    ids=lambda line: repr(line[:12]) + f"x{len(line)}",
)
def test_nasty_input_parses_or_fails_cleanly(line: str) -> None:
    outcome: SyslogMessage | LineParseError
    try:
        outcome = syslog(line)
    except LineParseError as exc:  # the one exception allowed
        outcome = exc
    if isinstance(outcome, LineParseError):
        assert 0 < len(str(outcome)) < 200
    else:
        assert outcome.rfc in ("5424", "3164")
        assert isinstance(outcome.message, str)


# --- levels and the parsed line -------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "level"),
    [(0, Level.FATAL), (1, Level.FATAL), (2, Level.FATAL), (3, Level.ERROR), (4, Level.WARN),
     (5, Level.INFO), (6, Level.INFO), (7, Level.DEBUG)],
)  # fmt: skip
def test_severity_level(severity: int, level: Level) -> None:
    assert severity_level(severity) == level


@pytest.mark.parametrize("severity", [-1, 8])
def test_severity_level_out_of_range(severity: int) -> None:
    with pytest.raises(ValueError, match="0 to 7"):
        severity_level(severity)


def test_facility_names() -> None:
    assert len(FACILITIES) == 24
    assert (FACILITIES[0], FACILITIES[1], FACILITIES[3], FACILITIES[10]) == (
        "kern",
        "user",
        "daemon",
        "authpriv",
    )
    assert FACILITIES[16:] == tuple(f"local{n}" for n in range(8))


def test_to_parsed_line_5424() -> None:
    parsed = to_parsed_line(syslog(LOGGER_TCP_5424))
    assert parsed == ParsedLine(
        "hello world",
        datetime(2026, 11, 26, 16, 36, 27, 961704, tzinfo=UTC),
        Level.ERROR,
        {
            "facility": "local0",
            "severity": 3,
            "hostname": "vm",
            "app_name": "myapp",
            # Typed as logfmt values are: "1" is 1; the message keeps its text.
            "structured_data": {
                "timeQuality": {"tzKnown": 1, "isSynced": 0},
                "zoo@123": {"tiger": "hungry"},
            },
            "rfc": "5424",
        },
    )


def test_structured_data_values_are_typed_and_header_fields_stay_text() -> None:
    parsed = to_parsed_line(
        syslog(
            '<165>1 2003-10-11T22:14:15.003Z host app 8710 42 [ex@1 eventID="1011" '
            'ok="true" code="007" ratio="0.5" big="123456789012345678901234567890"] m'
        )
    )
    assert parsed.metadata["structured_data"] == {
        "ex@1": {
            "eventID": 1011,
            "ok": True,
            "code": "007",
            "ratio": 0.5,
            "big": 123456789012345678901234567890,
        }
    }
    assert (parsed.metadata["procid"], parsed.metadata["msgid"]) == ("8710", "42")


def test_to_parsed_line_leaves_out_what_is_absent() -> None:
    parsed = to_parsed_line(syslog("<30>1 - - - 42 ID7 - started"))
    assert parsed.metadata == {
        "facility": "daemon",
        "severity": 6,
        "procid": "42",
        "msgid": "ID7",
        "rfc": "5424",
    }
    assert (parsed.timestamp, parsed.level, parsed.event_id) == (None, Level.INFO, None)


# --- TCP framing ----------------------------------------------------------------------

MIXED_STREAM = (
    b"<13>lf framed\n"
    b"<13>crlf framed\r\n"
    b"\n\r\n"  # empty frames are skipped
    b"11 <13>counted"
    b"\n"  # some senders add LF after a counted frame: an empty frame
    b"<13>nul framed\x00"
    b"<13>next after nul\n"
    b"<13>nul \x00 inside stays\n"
)
MIXED_FRAMES = [
    b"<13>lf framed",
    b"<13>crlf framed",
    b"<13>counted",
    b"<13>nul framed",
    b"<13>next after nul",
    b"<13>nul \x00 inside stays",
]


def test_framer_mixed_stream_at_once() -> None:
    framer = OctetFramer()
    assert framer.feed(MIXED_STREAM) == MIXED_FRAMES
    assert (framer.flush(), framer.truncated, framer.buffered) == ([], 0, 0)


@pytest.mark.parametrize(
    "stream", [MIXED_STREAM, LOGGER_TCP_OCTET_STREAM, LOGGER_TCP_LF_STREAM, LOGGER_TCP_5424]
)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_framer_any_chunking_gives_the_same_frames(stream: bytes, chunk: int) -> None:
    whole = OctetFramer()
    expected = whole.feed(stream) + whole.flush()
    framer = OctetFramer()
    frames: list[bytes] = []
    for start in range(0, len(stream), chunk):
        frames += framer.feed(stream[start : start + chunk])
    frames += framer.flush()
    inside = MIXED_STREAM.rindex(b"\x00")
    if stream is MIXED_STREAM and (inside + 1) % chunk == 0:
        # A NUL that ends what has arrived is taken as a trailer (the sender paused).
        assert frames == [*MIXED_FRAMES[:-1], b"<13>nul ", b" inside stays"]
    else:
        assert frames == expected


def test_framer_nul_trailer_at_the_end_of_what_arrived() -> None:
    framer = OctetFramer()
    assert framer.feed(b"<13>one\x00") == [b"<13>one"]
    assert framer.feed(b"<13>two\x00<13>three") == [b"<13>two"]
    assert framer.flush() == [b"<13>three"]


def test_framer_waits_for_the_rest_of_a_counted_frame() -> None:
    framer = OctetFramer()
    assert framer.feed(b"1") == []
    assert framer.feed(b"0 <13>a") == []
    assert framer.buffered == 5
    assert framer.feed(b"bcdef5 <13>") == [b"<13>abcdef"]
    assert framer.feed(b"x") == [b"<13>x"]
    assert framer.feed(b"6 <13>y\n") == [b"<13>y\n"]  # a counted frame keeps all its bytes


def test_framer_counted_frame_longer_than_the_maximum_is_cut() -> None:
    framer = OctetFramer(max_frame_bytes=10)
    frames = framer.feed(b"25 " + b"a" * 25 + b"3 <1>")
    assert frames == [b"a" * 10, b"<1>"]
    assert isinstance(frames[0], TruncatedFrame) and not isinstance(frames[1], TruncatedFrame)
    assert framer.truncated == 1


def test_framer_cut_counted_frame_skips_across_feeds() -> None:
    framer = OctetFramer(max_frame_bytes=10)
    assert framer.feed(b"30 " + b"a" * 12) == [b"a" * 10]
    assert framer.feed(b"b" * 10) == []
    assert framer.feed(b"c" * 8 + b"<1>x\n") == [b"<1>x"]
    assert (framer.truncated, framer.buffered) == (1, 0)


def test_framer_line_longer_than_the_maximum_is_cut() -> None:
    framer = OctetFramer(max_frame_bytes=10)
    frames = framer.feed(b"<1>" + b"x" * 20 + b"\n<1>ok\n")
    assert frames == [b"<1>" + b"x" * 7, b"<1>ok"]
    assert isinstance(frames[0], TruncatedFrame)
    # Without its LF yet: cut once the maximum is passed, the rest dropped up to the LF.
    assert framer.feed(b"<1>" + b"y" * 6) == []
    assert framer.feed(b"y" * 30) == [b"<1>" + b"y" * 7]
    assert framer.buffered == 0
    assert framer.feed(b"y" * 30 + b"\n<1>next\n") == [b"<1>next"]
    assert framer.truncated == 2


def test_framer_absurd_or_garbage_lengths_are_read_as_lines() -> None:
    framer = OctetFramer(max_frame_bytes=100)
    # Over ten times the maximum: not trusted as a length.
    assert framer.feed(b"1001 <13>not really counted\n") == [b"1001 <13>not really counted"]
    assert framer.feed(b"12345678901 digits\n") == [b"12345678901 digits"]  # 11 digits
    assert framer.feed(b"2024-05-01 a line starting with a date\n") == [
        b"2024-05-01 a line starting with a date"
    ]
    assert framer.feed(b"12\n") == [b"12"]
    # A length at ten times the maximum is still a length: read, cut and skipped.
    assert framer.feed(b"1000 " + b"z" * 1000) == [b"z" * 100]
    assert (framer.truncated, framer.buffered) == (1, 0)


def test_framer_memory_stays_bounded_on_endless_garbage() -> None:
    for garbage in (b"9" * 4096, b"x" * 4096, b"99999999999999999999 " * 200):
        framer = OctetFramer(max_frame_bytes=1024)
        frames = []
        for _ in range(500):  # 2 MB without a trailer
            frames += framer.feed(garbage)
            assert framer.buffered <= 1024 + len(garbage)
        assert len(frames) == 1 and len(frames[0]) == 1024
        assert isinstance(frames[0], TruncatedFrame)
        assert framer.feed(b"\n<1>recovered\n") == [b"<1>recovered"]


def test_framer_flush() -> None:
    framer = OctetFramer()
    assert framer.feed(b"<13>no trailer at the end\r") == []
    assert framer.flush() == [b"<13>no trailer at the end"]
    assert framer.flush() == []
    # A counted frame that never got all its bytes comes back, flagged as cut.
    assert framer.feed(b"50 <13>short") == []
    [partial] = framer.flush()
    assert partial == b"<13>short" and isinstance(partial, TruncatedFrame)
    assert framer.truncated == 1
    assert framer.feed(b"42") == [] and framer.flush() == [b"42"]
    assert framer.feed(b"\x00") == [] and framer.flush() == []


def test_framer_rejects_a_useless_maximum() -> None:
    with pytest.raises(ValueError, match="positive"):
        OctetFramer(max_frame_bytes=0)


def test_framer_frames_parse() -> None:
    framer = OctetFramer()
    stream = LOGGER_TCP_5424 + LOGGER_TCP_5424_OCTET + LOGGER_TCP_3164_PID
    messages = [syslog(frame) for frame in framer.feed(stream) + framer.flush()]
    assert [m.rfc for m in messages] == ["5424", "5424", "3164"]
    assert [m.message for m in messages] == ["hello world", "hello world", "with pid"]
    assert messages[0].timestamp is not None
    assert abs(messages[0].timestamp - NOW) < timedelta(days=1)

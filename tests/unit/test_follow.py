"""Reading lines for `logkeep ingest`: splitting, joining, checkpoints and rotation, on
real files in a temporary directory (no server)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from logkeep.ingest.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    default_path,
    identify,
    matches,
    refreshed,
)
from logkeep.ingest.follow import ROTATE_GRACE_S, FileFeed, LineSplitter, resume
from logkeep.ingest.multiline import Joiner, Record, SingleLines, make_joiner


def split_all(
    chunks: list[bytes], max_line_bytes: int = 100
) -> tuple[list[Record], list[tuple[int, int]]]:
    too_long: list[tuple[int, int]] = []
    splitter = LineSplitter(max_line_bytes, lambda n, size: too_long.append((n, size)), 0, 0)
    lines: list[Record] = []
    for chunk in chunks:
        lines += splitter.split(chunk)
    lines += splitter.finish()
    return lines, too_long


def test_lines_keep_their_numbers_and_end_offsets_across_chunks() -> None:
    data = b"one\r\ntwo\n\nthree\nfour"
    for cut in range(len(data) + 1):
        lines, _ = split_all([data[:cut], data[cut:]])
        assert [(line.data, line.first_line, line.end) for line in lines] == [
            (b"one", 1, 5),
            (b"two", 2, 9),
            (b"", 3, 10),
            (b"three", 4, 16),
            (b"four", 5, 20),
        ]


def test_an_over_long_line_is_skipped_and_reported_without_being_held() -> None:
    giant = b"x" * 250
    chunks = [b"a\n" + giant[:120], giant[120:], b"\nb\n"]
    lines, too_long = split_all(chunks)
    assert [(line.data, line.first_line) for line in lines] == [(b"a", 1), (b"b", 3)]
    assert too_long == [(2, 250)]
    assert lines[-1].end == 2 + 251 + 2
    lines, too_long = split_all([b"ok\n" + b"y" * 150])  # over-long and unterminated
    assert [line.data for line in lines] == [b"ok"] and too_long == [(2, 150)]


def joined(joiner: SingleLines | Joiner, text: bytes) -> list[Record]:
    lines, _ = split_all([text], max_line_bytes=10_000)
    return joiner.feed_many(lines) + joiner.flush()


PYTHON = b"""2024-05-01 10:00:00 ERROR payment failed
Traceback (most recent call last):
  File "app.py", line 3, in pay
    card["x"]
KeyError: 'x'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "app.py", line 5, in <module>
    pay()
ValueError: declined
2024-05-01 10:00:01 INFO next
StopIteration
"""

JAVA = b"""2024-05-01 10:00:02 ERROR [main] c.e.App - failed
java.lang.IllegalStateException: boom
\tat com.example.App.run(App.java:10)
\tat com.example.App.main(App.java:4)
Caused by: java.io.IOException: disk
\tat com.example.Disk.write(Disk.java:7)
\t... 2 more
2024-05-01 10:00:03 INFO recovered
"""


def test_auto_joins_python_and_java_traces_and_nothing_else() -> None:
    records = joined(make_joiner("auto", 10_000), PYTHON + JAVA)
    texts = [r.data.decode() for r in records]
    assert len(texts) == 5, texts
    assert texts[0].startswith("2024-05-01 10:00:00 ERROR payment failed\nTraceback")
    assert texts[0].endswith("ValueError: declined")
    assert "\n\nThe above exception was the direct cause" in texts[0]
    assert texts[1] == "2024-05-01 10:00:01 INFO next"
    assert texts[2] == "StopIteration"  # not after a traceback frame: its own entry
    assert texts[3].count("\n") == 6 and texts[3].endswith("\t... 2 more")
    assert texts[4] == "2024-05-01 10:00:03 INFO recovered"
    assert (records[0].first_line, records[0].last_line) == (1, 12)
    assert records[-1].end == len(PYTHON + JAVA)


def test_a_start_pattern_decides_entries() -> None:
    text = b"[1] first\ncontinued\n\n[2] second\n[3] third\n  more\n"
    records = joined(make_joiner(r"^\[\d+\]", 10_000), text)
    assert [r.data for r in records] == [
        b"[1] first\ncontinued",
        b"[2] second",
        b"[3] third\n  more",
    ]
    with pytest.raises(ValueError, match="not a regular expression"):
        make_joiner("([", 100)


def test_an_entry_never_grows_past_the_limit() -> None:
    text = b"start\n" + b"".join(b"  frame %d\n" % i for i in range(100))
    records = joined(Joiner(None, 200), text)
    assert all(len(r.data) <= 200 for r in records)
    assert b"\n".join(r.data for r in records) == text.rstrip(b"\n")


def test_single_lines_skip_blank_ones() -> None:
    assert [r.data for r in joined(SingleLines(), b"a\n\n  \nb\n")] == [b"a", b"b"]


def test_checkpoints_are_written_whole_and_read_back(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"hello\n")
    fd = os.open(log, os.O_RDONLY)
    try:
        identity = identify(fd)
        store = CheckpointStore(tmp_path / "state" / "cp.json")
        assert store.load() is None
        checkpoint = Checkpoint(str(log), "app", identity, 6, 1, 2, (6, 10))
        store.save(checkpoint)
        assert store.load() == checkpoint
        assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
        assert [p.name for p in (tmp_path / "state").iterdir()] == ["cp.json"]
        (tmp_path / "state" / "cp.json").write_text("{not json")
        with pytest.raises(CheckpointError, match="--from-start"):
            store.load()
    finally:
        os.close(fd)


def test_the_default_checkpoint_is_one_per_file_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    one = default_path(tmp_path / "app.log", "app")
    assert one.parent == tmp_path / "state" / "logkeep" / "checkpoints"
    assert one.name.startswith("app.log-")
    assert one != default_path(tmp_path / "app.log", "other")
    assert one == default_path(tmp_path / "." / "app.log", "app")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")  # invalid per the spec: ignored
    assert default_path(tmp_path / "app.log", "app").is_relative_to(Path.home())


def test_a_fingerprint_tells_a_rewritten_file_from_a_grown_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"first line\n")
    fd = os.open(log, os.O_RDONLY)
    try:
        identity = identify(fd)
        with log.open("ab") as out:
            out.write(b"x" * 5000 + b"\n")
        assert matches(identity, fd)  # grown: still the same file
        wider = refreshed(identity, fd)
        assert wider.fingerprint_len == 1024 and matches(wider, fd)
        with log.open("r+b") as out:  # rewritten in place: same inode, other bytes
            out.write(b"other line\n")
        assert not matches(identity, fd) and not matches(wider, fd)
    finally:
        os.close(fd)


class Feeding:
    """A FileFeed over `path` with the driver's switch-on-rotation, collecting lines."""

    def __init__(self, path: Path, offset: int = 0, line: int = 0, *, follow: bool = True) -> None:
        fd = os.open(path, os.O_RDONLY)
        self.notices: list[str] = []
        self.feed = FileFeed(
            path, fd, identify(fd), offset, line, follow=follow, max_line_bytes=1000,
            on_too_long=lambda n, s: None, notice=self.notices.append, wait=lambda s: None,
        )  # fmt: skip
        self.lines: list[bytes] = []
        self.switches = 0

    def pump(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            self.lines += [line.data for line in self.feed.read(0)]
            if self.feed.rotation_ready and self.feed.switch():
                self.switches += 1


def numbered(start: int, stop: int) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(start, stop))


def age(feed: FileFeed) -> None:
    """Pretend the grace period after a rotation has passed."""
    feed._finishing_since = (feed._finishing_since or 0) - ROTATE_GRACE_S - 1
    feed._last_data -= ROTATE_GRACE_S + 1


def test_rename_rotation_reads_the_old_file_to_its_end_first(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(numbered(0, 10))
    reader = Feeding(log)
    reader.pump()
    log.rename(tmp_path / "app.log.1")
    log.write_bytes(numbered(20, 25))
    with (tmp_path / "app.log.1").open("ab") as late:  # the writer had not reopened yet
        late.write(numbered(10, 20) + b"last without newline")
    reader.pump()
    assert reader.switches == 0  # the grace period keeps the old file open
    age(reader.feed)
    reader.pump()
    assert reader.switches == 1
    assert reader.lines == [
        *numbered(0, 20).splitlines(),
        b"last without newline",
        *numbered(20, 25).splitlines(),
    ]


def test_copytruncate_reads_the_rest_from_the_copy(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(numbered(0, 10))
    reader = Feeding(log)
    reader.pump()
    with log.open("ab") as out:
        out.write(numbered(10, 15))
    shutil.copy(log, tmp_path / "app.log.1")
    with log.open("r+b") as out:
        out.truncate(0)
    with log.open("ab") as out:
        out.write(numbered(15, 17))
    reader.pump()
    age(reader.feed)
    reader.pump()
    assert reader.switches == 1 and not reader.notices
    assert reader.lines == numbered(0, 17).splitlines()


def test_a_file_rewritten_past_the_offset_is_noticed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(numbered(0, 3))
    reader = Feeding(log)
    reader.pump()
    with log.open("r+b") as out:  # truncated and rewritten longer, no copy kept
        out.truncate(0)
        out.write(numbered(100, 120))
    reader.pump()
    assert reader.switches == 1 and "no copy" in reader.notices[0]
    assert reader.lines == numbered(0, 3).splitlines() + numbered(100, 120).splitlines()


def test_resume_finds_the_old_file_rotated_while_away(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(numbered(0, 10))
    fd = os.open(log, os.O_RDONLY)
    identity = identify(fd)
    os.close(fd)
    offset = len(numbered(0, 4))
    saved = Checkpoint(str(log), "app", identity, offset, 4)
    log.rename(tmp_path / "app.log.1")
    log.write_bytes(numbered(10, 12))
    notices: list[str] = []
    start = resume(log, os.open(log, os.O_RDONLY), saved, notices.append)
    assert start.finished and start.offset == offset and start.line == 4 and not notices
    feed = FileFeed(
        log, start.fd, start.identity, start.offset, start.line, follow=False,
        max_line_bytes=1000, on_too_long=lambda n, s: None, notice=notices.append,
        wait=lambda s: None, finished=True,
    )  # fmt: skip
    lines: list[bytes] = []
    while not feed.ended:
        lines += [line.data for line in feed.read(0)]
        if feed.rotation_ready:
            assert feed.switch()
    assert lines == numbered(4, 12).splitlines()


def test_resume_after_inode_reuse_starts_the_new_file_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(numbered(0, 10))
    fd = os.open(log, os.O_RDONLY)
    saved = Checkpoint(str(log), "app", identify(fd), 20, 3)
    os.close(fd)
    with log.open("r+b") as out:  # same inode, other content: not the checkpointed file
        out.truncate(0)
        out.write(b"brand new content that is long enough\n" * 3)
    notices: list[str] = []
    start = resume(log, os.open(log, os.O_RDONLY), saved, notices.append)
    os.close(start.fd)
    assert (start.offset, start.line, start.finished) == (0, 0, False)
    assert "truncated since the checkpoint" in notices[0]


def test_resume_continues_the_same_file_and_keeps_the_batch_in_flight(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(numbered(0, 10))
    fd = os.open(log, os.O_RDONLY)
    saved = Checkpoint(str(log), "app", identify(fd), 14, 2, 0, (14, 28))
    with log.open("ab") as out:
        out.write(numbered(10, 20))
    start = resume(log, fd, saved, lambda message: None)
    os.close(start.fd)
    assert (start.offset, start.line, start.in_flight) == (14, 2, (14, 28))
    assert not start.finished

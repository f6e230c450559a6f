"""Output handling and exit reporting of the worker ProcessProtocol, with no process."""

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock

from turberfield_twisted.launch.protocol import (
    MAX_LINE,
    OUTPUT_GRACE,
    ExitStatus,
    LineSplitter,
    OutputTail,
    WorkerProtocol,
)


def splitter(max_line=MAX_LINE):
    lines: list[str] = []
    return LineSplitter(lines.append, max_line), lines


# -- LineSplitter ---------------------------------------------------------------


def test_lines_across_chunks():
    """Lines are emitted whole, however the bytes are chunked; the newline is dropped."""
    split, lines = splitter()
    for chunk in (b"he", b"llo\nwor", b"ld\n\nlast"):
        split.feed(chunk)
    assert lines == ["hello", "world", ""]
    split.flush()
    assert lines == ["hello", "world", "", "last"]
    split.flush()
    assert lines[-1] == "last" and len(lines) == 4


def test_crlf_loses_its_carriage_return():
    """CRLF line ends are taken as LF."""
    split, lines = splitter()
    split.feed(b"one\r\ntwo\r\n")
    assert lines == ["one", "two"]


def test_a_long_line_is_split_at_64_kib():
    """A 1 MiB line goes out as 16 pieces of MAX_LINE bytes; the buffer never holds more."""
    split, lines = splitter()
    data = b"x" * (1024 * 1024) + b"\nnext\n"
    for start in range(0, len(data), 10000):
        split.feed(data[start : start + 10000])
        assert len(split._buf) <= MAX_LINE
    assert [len(line) for line in lines[:-1]] == [MAX_LINE] * 16
    assert lines[-1] == "next"


def test_a_line_of_exactly_max_is_one_line():
    """MAX_LINE bytes then a newline is one line, not a piece and an empty line."""
    split, lines = splitter(max_line=8)
    split.feed(b"12345678\n9\n")
    assert lines == ["12345678", "9"]


def test_bytes_that_are_not_utf8_are_replaced():
    """Invalid UTF-8 becomes U+FFFD; valid multi-byte characters survive."""
    split, lines = splitter()
    split.feed(b"raw \xff\xfe \xc3\x28 caf\xc3\xa9\n")
    assert lines == ["raw \ufffd\ufffd \ufffd( caf\u00e9"]
    lines[0].encode("utf-8")


def test_a_split_never_cuts_a_character():
    """Pieces of a long line end between UTF-8 characters, so none is mangled."""
    split, lines = splitter(max_line=10)
    split.feed(("\u00e9" * 12 + "\n").encode())  # 24 bytes of two-byte characters
    assert "".join(lines) == "\u00e9" * 12
    assert all(len(line.encode()) <= 10 for line in lines)


def test_a_split_of_invalid_bytes_still_bounded():
    """Continuation bytes with no lead byte still split at the bound."""
    split, lines = splitter(max_line=4)
    split.feed(b"\x80" * 10)
    split.flush()
    assert [len(line) for line in lines] == [4, 4, 2]


# -- OutputTail -----------------------------------------------------------------


def test_tail_keeps_the_last_lines():
    """Past max_lines, the oldest lines go."""
    tail = OutputTail(max_lines=3)
    for n in range(10):
        tail.append(float(n), "stdout", f"line {n}")
    assert [r["line"] for r in tail.lines()] == ["line 7", "line 8", "line 9"]
    assert tail.last(2) == ["line 8", "line 9"]
    assert tail.last(0) == []


def test_tail_is_bounded_in_characters():
    """Past max_chars characters, the oldest lines go; one huge line is cut to max_chars."""
    tail = OutputTail(max_lines=100, max_chars=1000)
    for n in range(10):
        tail.append(float(n), "stdout", str(n) * 300)
    kept = tail.lines()
    assert sum(len(r["line"]) for r in kept) <= 1000
    assert [r["line"][0] for r in kept] == ["7", "8", "9"]
    tail.append(11.0, "stderr", "y" * 5000)
    assert [r["line"] for r in tail.lines()] == ["y" * 1000]
    tail.append(12.0, "stderr", "é" * 1000)  # 2000 bytes of UTF-8, 1000 characters
    assert [r["line"] for r in tail.lines()] == ["é" * 1000]


def test_tail_filters_by_stream_and_time():
    """lines() and last() can keep to one stream; last() to lines since a time."""
    tail = OutputTail()
    tail.append(1.0, "stdout", "a")
    tail.append(2.0, "stderr", "b")
    tail.append(3.0, "stdout", "c")
    assert [r["line"] for r in tail.lines("stdout")] == ["a", "c"]
    assert tail.last(5, stream="stderr") == ["b"]
    assert tail.last(5, since=2.0) == ["b", "c"]
    assert tail.last(5, since=2.5, stream="stderr") == []


# -- WorkerProtocol -------------------------------------------------------------


def protocol(reactor=None):
    lines: list[tuple[str, str]] = []
    proto = WorkerProtocol("g", b"[g]\n", lambda stream, text: lines.append((stream, text)),
                           reactor=reactor)
    seen: list[ExitStatus] = []
    proto.exited().addCallback(seen.append)
    return proto, lines, seen


def exited(code=0, signal=None):
    return ExitStatus(None if signal is not None else code, signal).as_reason()


def test_exit_waits_for_the_last_output():
    """Reaped before its last stderr is read: exited fires only once stdout and stderr close."""
    clock = Clock()
    proto, lines, seen = protocol(clock)
    proto.childDataReceived(2, b"partial ")
    proto.processExited(exited(1))
    assert seen == []
    proto.childDataReceived(2, b"reason\n")
    proto.childConnectionLost(1)
    assert seen == []
    proto.childConnectionLost(2)
    assert seen == [ExitStatus(1, None)]
    assert lines == [("stderr", "partial reason")]
    assert clock.getDelayedCalls() == []


def test_exit_is_reported_after_the_grace_if_output_stays_open():
    """A grandchild holding stdout open delays the exit report by OUTPUT_GRACE at most."""
    clock = Clock()
    proto, lines, seen = protocol(clock)
    proto.childDataReceived(1, b"no newline yet")
    proto.processExited(exited(signal=9))
    clock.advance(OUTPUT_GRACE - 0.01)
    assert seen == []
    clock.advance(0.01)
    assert seen == [ExitStatus(None, 9)]
    assert lines == [("stdout", "no newline yet")]
    proto.processEnded(exited(signal=9))
    assert proto.exited().result == ExitStatus(None, 9)
    assert len(seen) == 1


def test_exit_with_no_reactor_is_reported_on_reaping():
    """Without a reactor for the grace, the exit is reported as soon as the child is reaped."""
    proto, _, seen = protocol()
    proto.processExited(exited(0))
    assert seen == [ExitStatus(0, None)]


def test_process_ended_reports_the_exit():
    """processEnded (every pipe closed, child reaped) reports the exit if nothing did yet."""
    clock = Clock()
    proto, _, seen = protocol(clock)
    proto.processExited(exited(2))
    proto.processEnded(exited(2))
    assert seen == [ExitStatus(2, None)]
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    ("reason", "text"),
    [(exited(0), "exit 0"), (exited(3), "exit 3"), (exited(signal=15), "signal 15")],
)
def test_exit_status_describes_itself(reason, text):
    """ExitStatus reads ProcessDone/ProcessTerminated and says 'exit N' or 'signal N'."""
    assert ExitStatus.from_reason(reason).describe() == text


@pytest.mark.parametrize("status", [ExitStatus(0, None), ExitStatus(3, None),
                                    ExitStatus(None, 9), ExitStatus(None, None)])
def test_exit_status_as_a_reason_reads_back_as_itself(status):
    """as_reason gives ProcessDone for exit 0, else ProcessTerminated; from_reason reads it back."""
    reason = status.as_reason()
    assert reason.check(ProcessDone if status.code == 0 else ProcessTerminated)
    assert ExitStatus.from_reason(reason) == status

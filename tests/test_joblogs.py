"""
Logs on disk, their parts: the line format read back, a file never past
its size, JobLogs' queue (dropped and counted when full), its reads with
``since``, reopening after an outside rotation and forgetting a job's files.
On the real reactor and its writer thread, with files in ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from turberfield_twisted.config.logs import LogSettings
from turberfield_twisted.daemon.joblogs import JobLogs
from turberfield_twisted.daemon.logfiles import (
    LOG_NAME,
    SizedLogFile,
    format_line,
    parse_line,
    read_lines,
)
from turberfield_twisted.jobs.job import EventKind, Job, JobEvent, JobState, OutputLine


@pytest.mark.parametrize("as_json", [False, True])
def test_a_line_reads_back_as_written(as_json: bool) -> None:
    """A line on disk, text or JSON, reads back with its time, stream and text."""
    line = OutputLine("g", 1796573008.123456, "stderr", "héllo {not json} done")
    record = parse_line(format_line(line, as_json, 4096))
    assert record is not None
    assert record["stream"] == "stderr" and record["line"] == line.line
    assert abs(float(record["time"]) - line.time) < 1e-5  # type: ignore[arg-type]


@pytest.mark.parametrize("as_json", [False, True])
def test_a_long_line_is_cut_to_fit_a_file(as_json: bool) -> None:
    """A line longer than log_max_bytes is cut so that it fits in one file."""
    data = format_line(OutputLine("g", 1.0, "stdout", "é" * 10_000), as_json, 4096)
    assert len(data) <= 4096 and data.endswith(b"\n")
    assert parse_line(data) is not None


def test_a_cut_or_foreign_line_is_skipped() -> None:
    """A line that is not one of ours (cut by a full disk, say) reads as None."""
    assert parse_line(b"2026-12-0") is None
    assert parse_line(b"{\"time\": 1, \"stream\": \"other\", \"line\": \"x\"}") is None
    assert parse_line(b"nonsense here\n") is None


def test_rotation_keeps_backups_files_none_over_max(tmp_path: Path) -> None:
    """SizedLogFile rotates before a write would pass max_bytes: backups kept, none over."""
    logs = SizedLogFile(tmp_path, 5000, 3)
    for n in range(500):
        logs.write(b"%05d " % n + b"y" * 93 + b"\n")  # 100 bytes: 50 fill a file
    logs.close()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [LOG_NAME, *(f"{LOG_NAME}.{n}" for n in (1, 2, 3))]
    assert all(path.stat().st_size <= 5000 for path in tmp_path.iterdir())
    assert all((tmp_path / name).stat().st_size == 5000 for name in names[1:])


def _logs(reactor: Any, root: Path, jobs: dict[str, Job], **more: Any) -> JobLogs:
    return JobLogs(reactor, root, LogSettings(dir=str(root), max_bytes=4096, backups=2),
                   jobs.get, **more)


@pytest_twisted.ensureDeferred
async def test_read_since_finds_only_later_lines(reactor: Any, tmp_path: Path) -> None:
    """GET logs?since= reads from the files: only lines stamped then or later, oldest first."""
    jobs = {"a": Job(guid="a", port=0, session=None, module="m")}
    logs = _logs(reactor, tmp_path, jobs)
    try:
        for n in range(200):
            logs.line(OutputLine("a", 1000.0 + n, "stdout", f"line {n}"))
        found = await logs.read("a", 1000, since=1150.0)
        assert [record["line"] for record in found] == [f"line {n}" for n in range(150, 200)]
        assert [record["line"] for record in await logs.read("a", 3)] == [
            "line 197", "line 198", "line 199"]
        assert await logs.read("nobody", 10) == []
    finally:
        await logs.close()
    assert logs.written == 200 and not logs.dropped


@pytest_twisted.ensureDeferred
async def test_a_full_queue_drops_and_counts(reactor: Any, tmp_path: Path) -> None:
    """Lines past the queue's bound are dropped, counted on the job and in ``dropped``."""
    job = Job(guid="a", port=0, session=None, module="m")
    logs = _logs(reactor, tmp_path, {"a": job}, max_queued=1000)
    try:
        for n in range(100):  # the reactor does not turn: the writer has the first batch only
            logs.line(OutputLine("a", 1.0 + n, "stdout", "z" * 50))
        lines = await logs.read("a", 1000)
    finally:
        await logs.close()
    assert job.log_dropped == logs.dropped["a"] > 0
    assert len(lines) + job.log_dropped == 100


@pytest_twisted.ensureDeferred
async def test_reopen_follows_an_outside_rotation(reactor: Any, tmp_path: Path) -> None:
    """After a tool moves the file away, reopen starts a new one at the same path."""
    logs = _logs(reactor, tmp_path, {})
    try:
        logs.line(OutputLine("a", 1.0, "stdout", "before"))
        assert [r["line"] for r in await logs.read("a", 10)] == ["before"]
        (tmp_path / "a" / LOG_NAME).rename(tmp_path / "a" / "moved")
        assert await logs.reopen() == 1
        logs.line(OutputLine("a", 2.0, "stdout", "after"))
        assert [r["line"] for r in await logs.read("a", 10)] == ["after"]
    finally:
        await logs.close()
    assert parse_line((tmp_path / "a" / "moved").read_bytes())["line"] == "before"  # type: ignore[index]


@pytest_twisted.ensureDeferred
async def test_ending_closes_and_forgetting_removes(reactor: Any, tmp_path: Path) -> None:
    """A job that ends has its file closed (kept); one forgotten has its directory removed."""
    logs = _logs(reactor, tmp_path, {})
    try:
        logs.line(OutputLine("a", 1.0, "stdout", "said"))
        ended = JobEvent(kind=EventKind.STATE, name="exited", guid="a", module="m", time=2.0,
                         state=JobState.EXITED, port=0, pid=None, restarts=0, last_error=None)
        logs.event(ended)
        assert [r["line"] for r in await logs.read("a", 10)] == ["said"]
        logs.forget("a")
        assert await logs.read("a", 10) == []
    finally:
        await logs.close()
    assert not (tmp_path / "a").exists()
    assert read_lines(tmp_path / "a", 2, 10) == []


@pytest_twisted.ensureDeferred
async def test_a_read_spans_rotated_files_in_order(reactor: Any, tmp_path: Path) -> None:
    """A read across the current file and its backups gives the lines still kept, in order."""
    logs = _logs(reactor, tmp_path, {})
    try:
        for n in range(400):  # about 45 bytes a line: 4096-byte files, 2 backups
            logs.line(OutputLine("a", 1000.0 + n, "stdout", f"line {n}"))
        every = [record["line"] for record in await logs.read("a", 1000)]
        some = [record["line"] for record in await logs.read("a", 150)]
    finally:
        await logs.close()
    first = int(str(every[0]).split()[1])
    assert 0 < first and every == [f"line {n}" for n in range(first, 400)]
    assert len(every) > 150 and some == every[-150:]

"""
Logs on disk: every line a job's worker writes goes to its own rotated
file under the log dir (:mod:`.logfiles`), as well as to the live tail.

The reactor never waits on the disk: it appends each line to a queue
bounded in bytes and hands the queue to ONE writer thread (a
:class:`~twisted.python.threadpool.ThreadPool` of one, so the order is
kept), which writes it and answers with what it could not write. A line
that finds the queue full (the disk is stalled), or that the disk
refuses (full, say), is dropped and counted: on the job
(``log_dropped``, in ``GET /jobs/{guid}``), in :attr:`JobLogs.dropped`
(the metrics), and logged once under its guid until a write works again.
Reads, reopens and forgetting run on the same thread, after every line
queued before them.

A job's file is closed when it ends (its next run opens it again), and
when the job is forgotten its directory is removed with every file in it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from turberfield_twisted.config.logs import LogSettings
from turberfield_twisted.daemon.logfiles import (
    SizedLogFile,
    chunks,
    forget_files,
    format_line,
    job_dir,
    read_lines,
)
from turberfield_twisted.jobs.job import ENDED, EventKind, Job, JobEvent, OutputLine

__all__ = ["MAX_QUEUED", "JobLogs"]

#: Bytes of output the reactor queues for the writer thread before lines are dropped.
MAX_QUEUED = 8 * 1024 * 1024

#: Most bytes written at once (never over a file's ``max_bytes``).
_CHUNK = 64 * 1024

_T = TypeVar("_T")


class JobLogs:
    """
    Each job's output to ``root``/GUID/ as ``settings`` say; ``job(guid)``
    finds a job of the table (to count what it lost). Observe with
    :meth:`line` (``subscribe_output``) and :meth:`event` (``subscribe``).
    """

    log = Logger()

    def __init__(self, reactor: IReactorFromThreads, root: Path, settings: LogSettings,
                 job: Callable[[str], Job | None], max_queued: int = MAX_QUEUED):
        self._reactor = reactor
        self.root = root
        self.settings = settings
        self._job = job
        self._max_queued = max_queued
        self._queued: list[tuple[str, bytes]] = []
        self._queued_bytes = 0
        self._in_flight = 0  # batches handed to the thread, not yet written
        self._files: dict[str, SizedLogFile] = {}  # the writer thread's alone
        self._failing: set[str] = set()
        #: Lines dropped, by guid: the disk refused them, or the queue was full.
        self.dropped: Counter[str] = Counter()
        #: Lines written, over all jobs.
        self.written = 0
        self._pool = ThreadPool(1, 1, name="proactor-logs")  # started on first use
        self._closed = False

    # -- the reactor's side ---------------------------------------------------

    def line(self, line: OutputLine) -> None:
        """Queue one line of a job's output for its file (or drop and count it)."""
        if self._closed:
            return
        data = format_line(line, self.settings.format == "json", self.settings.max_bytes)
        if self._queued_bytes + len(data) > self._max_queued:
            self._drop(line.guid, 1, "the writer is behind (the disk is slow or stalled)")
            return
        self._queued.append((line.guid, data))
        self._queued_bytes += len(data)
        self._flush()

    def event(self, event: JobEvent) -> None:
        """A job that ended has its file closed (once its lines are written)."""
        if event.kind is EventKind.STATE and event.state in ENDED and not self._closed:
            self._in_thread(self._close_file, event.guid)

    def read(self, guid: str, count: int, since: float | None = None
             ) -> Deferred[list[dict[str, object]]]:
        """The last ``count`` lines of job ``guid`` on disk (at ``since`` or later)."""
        return self._in_thread(read_lines, job_dir(self.root, guid), self.settings.backups,
                               count, since)

    def reopen(self) -> Deferred[int]:
        """Reopen every open file (after an outside tool moved them); fire with how many."""
        self.log.info("reopening the job log files under {root}", root=str(self.root))
        return self._in_thread(self._reopen_all)

    def forget(self, guid: str) -> None:
        """Job ``guid`` is forgotten: its files go too (a failure is logged)."""
        if self._closed:
            return
        self._in_thread(self._forget, guid).addErrback(
            lambda failure: self.log.error("job {guid}: its log files stay: {error}",
                                           guid=guid, error=str(failure.value)))

    def close(self) -> Deferred[None]:
        """Write what is queued, close every file and stop the writer thread."""
        self._closed = True
        d = self._in_thread(self._close_all)

        def stop(result: object) -> object:
            if self._pool.started:
                self._pool.stop()
            return result

        return d.addBoth(stop).addCallback(lambda _: None)

    def _flush(self, now: bool = False) -> None:
        """Hand the queue to the thread: when it is idle (or ``now``: the thread keeps order)."""
        if not self._queued or (self._in_flight and not now):
            return
        batch, self._queued, self._queued_bytes = self._queued, [], 0
        self._in_flight += 1
        self._start()
        deferToThreadPool(self._reactor, self._pool, self._write, batch).addCallbacks(
            self._written, self._not_written, errbackArgs=(batch,))

    def _written(self, outcome: tuple[int, dict[str, tuple[int, str]]]) -> None:
        self._in_flight -= 1
        written, lost = outcome
        self.written += written
        for guid, (count, reason) in lost.items():
            self._drop(guid, count, reason)
        for guid in self._failing - set(lost):
            self._failing.discard(guid)
            self.log.info("job {guid}: its output is written to disk again", guid=guid)
        self._flush()

    def _not_written(self, failure: object, batch: list[tuple[str, bytes]]) -> None:
        self._in_flight -= 1
        self.log.error("the log writer failed: {failure}", failure=failure)
        for guid in {guid for guid, _ in batch}:
            self._drop(guid, sum(1 for g, _ in batch if g == guid), "the writer failed")
        self._flush()

    def _drop(self, guid: str, count: int, reason: str) -> None:
        self.dropped[guid] += count
        job = self._job(guid)
        if job is not None:
            job.log_dropped += count
        if guid not in self._failing:
            self._failing.add(guid)
            self.log.error("job {guid}: output lines dropped, not written to disk: {reason}",
                           guid=guid, reason=reason)

    def _in_thread(self, work: Callable[..., _T], *args: object) -> Deferred[_T]:
        """Run ``work`` on the writer thread after everything queued before it."""
        self._flush(now=True)
        if self._pool.joined:
            raise RuntimeError("the job logs are closed")
        self._start()
        return deferToThreadPool(self._reactor, self._pool, work, *args)

    def _start(self) -> None:
        if not self._pool.started:
            self._pool.start()

    # -- the writer thread's side ---------------------------------------------

    def _write(self, batch: list[tuple[str, bytes]]) -> tuple[int, dict[str, tuple[int, str]]]:
        """Write ``batch``: the lines written, and those lost by guid (count, why)."""
        by_job: dict[str, list[bytes]] = {}
        for guid, data in batch:
            by_job.setdefault(guid, []).append(data)
        written = 0
        lost: dict[str, tuple[int, str]] = {}
        most = min(_CHUNK, self.settings.max_bytes)
        for guid, lines in by_job.items():
            for data, count in chunks(lines, most):
                try:
                    self._file(guid).write(data)
                    written += count
                except (OSError, ValueError) as exc:  # ValueError: a rotation left it closed
                    before = lost.get(guid, (0, ""))[0]
                    lost[guid] = (before + count, getattr(exc, "strerror", None) or str(exc))
                    self._discard(guid)  # opened afresh for the next line
        return written, lost

    def _file(self, guid: str) -> SizedLogFile:
        found = self._files.get(guid)
        if found is None:
            directory = job_dir(self.root, guid)
            directory.mkdir(mode=0o700, exist_ok=True)
            found = SizedLogFile(directory, self.settings.max_bytes, self.settings.backups)
            self._files[guid] = found
        return found

    def _discard(self, guid: str) -> None:
        try:
            self._close_file(guid)
        except (OSError, ValueError, AttributeError):  # closed already, or its close failed
            pass

    def _close_file(self, guid: str) -> None:
        found = self._files.pop(guid, None)
        if found is not None:
            found.close()

    def _reopen_all(self) -> int:
        for found in self._files.values():
            found.reopen()
        return len(self._files)

    def _forget(self, guid: str) -> None:
        self._close_file(guid)
        forget_files(job_dir(self.root, guid))

    def _close_all(self) -> None:
        for guid in list(self._files):
            self._close_file(guid)

"""
A job's process statistics: read from its own process group down, never
the rest of /proc, and at most once a second per job, however many ask
(``GET /jobs``, ``GET /jobs/{guid}`` and the memory watch share a reading).
What is read is seen through Python's audit hooks (every ``open`` and
directory listing of this process), not timed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import pytest_twisted
from test_limits import Local
from twisted.internet.task import Clock

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.http.views import job_views
from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.jobs.limits import MemoryWatch
from turberfield_twisted.jobs.procstat import job_stats
from turberfield_twisted.testing import running_worker
from turberfield_twisted.testing.procs import idle

SPAWNER = "turberfield_twisted.testing.spawner"


class ProcReads:
    """The /proc paths this process opens or lists while :attr:`recording` is a list."""

    recording: list[str] | None = None

    @classmethod
    def hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if cls.recording is None or event not in ("open", "os.listdir", "os.scandir"):
            return
        path = args[0] if args else None
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if isinstance(path, str) and path.startswith("/proc"):
            cls.recording.append(path)


sys.addaudithook(ProcReads.hook)  # hooks can't be removed: it records only when asked


@contextmanager
def proc_reads() -> Iterator[list[str]]:
    """Record the /proc paths opened or listed in the block."""
    ProcReads.recording = reads = []
    try:
        yield reads
    finally:
        ProcReads.recording = None


def pids_read(reads: list[str]) -> set[int]:
    """The pids whose /proc entries were read."""
    return {int(match.group(1)) for path in reads
            if (match := re.match(r"/proc/([0-9]+)(/|$)", path))}


@pytest.fixture
def bystanders() -> Iterator[list[int]]:
    """Twenty sleeping processes that belong to no job."""
    procs = [idle(start_new_session=True) for _ in range(20)]
    yield [proc.pid for proc in procs]
    for proc in procs:
        proc.kill()
        proc.wait(10)


@pytest_twisted.ensureDeferred
async def test_a_job_view_reads_its_own_group_and_no_other_process(bystanders):
    """GET /jobs/{guid} and GET /jobs read the worker and the child it started (and they
    are counted), never /proc as a whole, nor any process outside the job's group."""
    async with running_worker(SPAWNER) as worker:
        child = (await (await worker.client.get("/child")).json())["pid"]
        with proc_reads() as reads:
            job = await worker.initiator.job(worker.guid)
        assert job["rss"] > 0 and job["cpu"] is not None
        assert "/proc" not in reads and "/proc/" not in reads
        assert pids_read(reads) == {worker.pid, child}, reads
        assert f"/proc/{child}/stat" in reads
        job_record = worker.owner.init.job(worker.guid)
        job_record.usage = None  # forget the reading: GET /jobs reads again
        with proc_reads() as reads:
            [listed] = await worker.initiator.jobs()
        assert listed["rss"] > 0 and pids_read(reads) == {worker.pid, child}
        assert not set(bystanders) & pids_read(reads)


def test_a_reading_is_kept_a_second_and_shared_by_the_views_and_the_watch():
    """Views at 0 and 0.5 s and the memory watch at 0.9 s share one reading of the group;
    at 1 s, or for the job's next worker, it is read again."""
    sleeper = idle(start_new_session=True)
    other = idle(start_new_session=True)
    try:
        job = Job(guid="g", port=1, session=None, module="m", process=Local(sleeper.pid),
                  state=JobState.READY, limits=Limits(max_memory=10 ** 12))
        clock = Clock()
        over: list[Any] = []
        watch = MemoryWatch(clock, lambda: [job], lambda *a: over.append(a), lambda: 1.0)
        stat = f"/proc/{sleeper.pid}/stat"
        with proc_reads() as reads:
            first = job_views([job], 0.0)[0]
            assert job_views([job], 0.5)[0]["rss"] == first["rss"] > 0
            clock.advance(0.9)
            watch.check()
            assert reads.count(stat) == 1
            clock.advance(0.1)
            watch.check()
            assert reads.count(stat) == 2
            job.process = Local(other.pid)  # a restart: a new worker, a new reading
            assert job_stats(job, 1.2) is not None
            assert reads.count(f"/proc/{other.pid}/stat") == 1
        assert over == []
    finally:
        for proc in (sleeper, other):
            proc.kill()
            proc.wait(10)

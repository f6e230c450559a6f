"""
Per-job limits: handed to the launcher with the spawn (tests/test_rlimits_spawn.py
shows the launchers set them), a process group's RSS read from /proc, the memory
watch on a Clock, and what the lifecycle does with a job over its limit.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap

from test_lifecycle import World
from twisted.internet.task import Clock
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits, explain_exit
from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.jobs.limits import MemoryWatch
from turberfield_twisted.jobs.procstat import group_stats
from turberfield_twisted.launch.interfaces import ILocalProcess

MB = 1024 * 1024


@implementer(ILocalProcess)
class Local:
    """A local process by pid, as a launcher's process would say it is."""

    def __init__(self, pid: int):
        self.pid = pid

    def exited(self):  # pragma: no cover (not used here)
        raise NotImplementedError

    def signal(self, sig: int) -> None:  # pragma: no cover
        os.kill(self.pid, sig)


def test_limits_over_a_base_take_its_values_where_they_set_none():
    """A declared job's own limits win; the module's fill in the rest."""
    mine = Limits(max_memory=1, max_cpu_seconds=None)
    assert mine.over(Limits(max_memory=5, max_cpu_seconds=7)) == Limits(1, None, 7)
    assert Limits(max_open_files=64).rlimits() == {resource.RLIMIT_NOFILE: 64}
    assert Limits(max_memory=10).rlimits() == {}


def test_a_kill_under_a_cpu_limit_is_explained():
    """An unasked SIGKILL of a job with max_cpu_seconds says it may be the kernel's limit."""
    assert "max_cpu_seconds is 5" in explain_exit(signal.SIGKILL, Limits(max_cpu_seconds=5))
    assert explain_exit(signal.SIGKILL, Limits()) == ""
    assert explain_exit(signal.SIGTERM, Limits(max_cpu_seconds=5)) == ""


GROUP = textwrap.dedent("""
    import subprocess, sys
    block = bytearray(40 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    print(child.pid, flush=True)
    sys.stdin.read()
    """)


def test_a_groups_rss_is_summed_over_its_members():
    """group_stats reads every live member of the group a pid leads, once through /proc."""
    proc = subprocess.Popen([sys.executable, "-c", GROUP], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            start_new_session=True, text=True)
    try:
        child = int(proc.stdout.readline())
        stats = group_stats([proc.pid, child, 2 ** 22 + 12345])
        assert stats[proc.pid].pids == tuple(sorted((proc.pid, child)))
        assert stats[proc.pid].rss > 40 * MB
        assert stats[proc.pid].cpu_seconds >= 0
        assert stats[child].pids == (child,)  # not a leader: itself alone
        assert stats[child].rss < stats[proc.pid].rss
        assert 2 ** 22 + 12345 not in stats
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# -- the watch, on a Clock ----------------------------------------------------------


def watched(state: JobState, max_memory: int | None = 100, pid: int = 4242) -> Job:
    return Job(guid=f"g{pid}", port=1, session=None, module="m", process=Local(pid), state=state,
               limits=Limits(max_memory=max_memory))


def test_the_watch_samples_every_interval_and_reports_a_job_over_its_limit():
    """Each interval, only starting or ready local jobs with a max_memory are sampled."""
    clock = Clock()
    jobs = [watched(JobState.READY, pid=1), watched(JobState.STARTING, pid=2),
            watched(JobState.STOPPING, pid=3), watched(JobState.READY, None, pid=4)]
    asked, over = [], []

    def sample(job, now):
        asked.append((job.pid, now))
        return {1: 101, 2: 100}[job.pid]

    watch = MemoryWatch(clock, lambda: jobs, lambda job, why: over.append((job.guid, why)),
                        lambda: 2.0, sample)
    watch.start()
    clock.advance(1.9)
    assert asked == []
    clock.advance(0.1)
    assert asked == [(1, 2.0), (2, 2.0)]
    assert over == [("g1", "over its max_memory: RSS 101 bytes, limit 100")]
    watch.stop()
    clock.advance(10)
    assert len(asked) == 2 and clock.getDelayedCalls() == []


def test_the_watch_leaves_a_job_alone_once_it_went_over():
    """A job already stopping for its limit (limit_hit) is not reported again."""
    job = watched(JobState.READY, pid=1)
    job.limit_hit = "over its max_memory"
    over = []
    watch = MemoryWatch(Clock(), lambda: [job], lambda *a: over.append(a), lambda: 1.0,
                        lambda job, now: 10 ** 9)
    watch.check()
    assert over == []


# -- the lifecycle -----------------------------------------------------------------


def test_a_job_over_its_limit_is_stopped_and_restarted_saying_why():
    """over_limit: SIGTERM, still ready; its exit (even 0) is a failure: backoff, then a new run."""
    w = World(restart="on-failure")
    job = w.new()
    w.healthy(job)
    worker = w.worker(job)
    worker.dies_on = frozenset({signal.SIGKILL})
    w.lifecycle.over_limit(job, "over its max_memory: RSS 2 bytes, limit 1")
    assert worker.signals == [signal.SIGTERM] and job.state is JobState.READY
    w.lifecycle.over_limit(job, "again")  # once is enough
    assert worker.signals == [signal.SIGTERM]
    worker.exit(0)
    assert job.state is JobState.BACKOFF
    assert job.last_error == "over its max_memory: RSS 2 bytes, limit 1"
    w.clock.advance(1)
    assert job.state is JobState.STARTING and job.limit_hit is None
    assert w.worker(job) is not worker


def _over_limit_ignoring_sigterm():
    """A ready job whose worker ends only on SIGKILL, just found over its max_memory."""
    w = World()
    job = w.new()
    w.healthy(job)
    worker = w.worker(job)
    worker.dies_on = frozenset({signal.SIGKILL})
    w.lifecycle.over_limit(job, "over its max_memory")
    return w, job, worker


def test_a_job_that_ignores_sigterm_at_its_limit_is_killed_after_stop_timeout():
    """The limit's SIGTERM is followed by SIGKILL after stop_timeout, as a stop is."""
    w, job, worker = _over_limit_ignoring_sigterm()
    w.clock.advance(5)
    assert worker.signals[:2] == [signal.SIGTERM, signal.SIGKILL]
    # its exit counts as a failure, and the first restart is at once
    assert w.states(job)[-4:] == ["ready", "backoff", "waiting", "starting"]
    assert job.restarts == 1 and w.worker(job) is not worker


def test_a_stop_after_a_limit_hit_kills_at_the_stops_deadline_only():
    """An operator's stop(timeout=60) after a limit hit: no SIGKILL at stop_timeout, one at 60 s."""
    w, job, worker = _over_limit_ignoring_sigterm()
    w.lifecycle.stop(job, timeout=60)
    assert worker.signals == [signal.SIGTERM, signal.SIGTERM]
    w.clock.advance(59.9)
    assert worker.signals == [signal.SIGTERM, signal.SIGTERM] and job.state is JobState.STOPPING
    w.clock.advance(0.1)
    assert worker.signals[2] == signal.SIGKILL
    assert job.state is JobState.EXITED and w.pending() == []


def test_with_restart_never_a_job_over_its_limit_fails_saying_why():
    """Its policy decides: restart = never leaves it failed, last_error the limit."""
    w = World(restart="never")
    job = w.new()
    w.healthy(job)
    w.lifecycle.over_limit(job, "over its max_memory")
    assert job.state is JobState.FAILED and job.last_error == "over its max_memory"


def test_a_job_is_spawned_under_its_limits():
    """The lifecycle hands the launcher the job's limits with the spawn: it sets them."""
    w = World(max_open_files=64, max_cpu_seconds=7)
    job = w.new()
    assert w.worker(job).limits == Limits(max_open_files=64, max_cpu_seconds=7)
    assert job.limits == w.worker(job).limits and job.limit_hit is None

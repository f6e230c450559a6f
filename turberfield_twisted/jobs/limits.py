"""
Per-job limits, from a module's section or a declared job's:

``max_memory``
    Bytes of resident memory (RSS) of the worker's process group. The
    daemon samples it every ``limit_interval`` seconds (a
    :class:`MemoryWatch`, sharing each job's reading with the API's views:
    :func:`~.procstat.job_stats`); a worker over it is stopped (SIGTERM, then
    SIGKILL after ``stop_timeout``) and restarted under its restart policy,
    its ``last_error`` saying why, as PM2's ``max_memory_restart`` does.
``max_open_files``, ``max_cpu_seconds``
    ``RLIMIT_NOFILE`` and ``RLIMIT_CPU`` (soft and hard alike): the kernel
    refuses more open files (``EMFILE``) and kills the worker (SIGKILL)
    once it has used that much CPU time. The lifecycle hands them to the
    launcher's ``spawn``, which sets them where and when it can: a local
    worker runs through util-linux ``prlimit`` and has them before its
    interpreter starts (:mod:`~turberfield_twisted.launch.local`; without
    ``prlimit``, ``prlimit(2)`` sets them just after the spawn); a warm one
    sets them on itself just after its fork, before it runs the module
    (:mod:`~turberfield_twisted.launch.warm.template`); a Slurm task gets
    Slurm's own, not these.

:class:`Limits` itself, a value the config is checked into, is
:mod:`turberfield_twisted.config.policy`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from turberfield_twisted.jobs.job import LIVE, Job
from turberfield_twisted.jobs.procstat import job_stats, local_pid

__all__ = ["MemoryWatch", "local_pid"]


def _rss(job: Job, now: float) -> int | None:
    stats = job_stats(job, now)
    return stats.rss if stats is not None else None


class MemoryWatch:
    """
    Every ``interval()`` seconds on ``reactor``, read the RSS of the
    process group of each of ``jobs()`` that is starting or ready, runs on
    this host and has a ``max_memory``; call ``over(job, reason)`` for one
    over its limit. ``sample(job, now)`` reads the RSS of a job's group
    (None: it is gone); by default the job's shared reading
    (:func:`~.procstat.job_stats`).
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, jobs: Callable[[], Iterable[Job]],
                 over: Callable[[Job, str], None], interval: Callable[[], float],
                 sample: Callable[[Job, float], int | None] = _rss):
        self._jobs = jobs
        self._over = over
        self._interval = interval
        self._sample = sample
        self._reactor = reactor
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        """Sample every ``interval()`` seconds from now on."""
        if self._loop is None:
            self._loop = LoopingCall(self.check)
            self._loop.clock = self._reactor
            self._loop.start(self._interval(), now=False).addErrback(
                lambda failure: self.log.failure("the memory watch stopped", failure=failure))

    def stop(self) -> None:
        """Stop sampling."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def check(self) -> None:
        """Sample once: every job over its ``max_memory`` is told to ``over``."""
        now = self._reactor.seconds()
        for job in list(self._jobs()):
            limits = job.limits
            if (limits is None or not limits.max_memory or local_pid(job.process) is None
                    or job.limit_hit or job.state not in LIVE):
                continue
            rss, limit = self._sample(job, now), limits.max_memory
            if rss is not None and rss > limit:
                self._over(job, f"over its max_memory: RSS {rss} bytes, limit {limit}")
        if self._loop is not None:
            self._loop.interval = self._interval()  # a reload may have changed it

"""
Liveness: once a job is ready, is it still well?

Readiness (:mod:`.readiness`) asks once, at start; :class:`Liveness` asks
again every ``live_interval`` seconds for as long as the job is ready.
Each job draws one of :data:`PHASES` points of the interval on the
clock's grid of it, so that a hundred jobs are not all asked at once, nor
wake the daemon a hundred times a second. The jobs that drew a point
share one timer on the injected reactor
(:class:`~turberfield_twisted.jobs.livephase.Phase`, a ``DelayedCall``
armed again at each moment): the issue asked for a timer per job, but a
check is two moments and a timer per job cost the daemon two
``callLater`` per check, a fifth of what a check cost it, enough to keep
100 jobs at 1 s over the 1% of a core they may cost (the numbers are in
:mod:`.livephase`). Each job still keeps its own phase, checks, counts and
restart.

A check by HTTP is two moments of its phase: at the phase, ``GET
live_path`` is sent; ``live_timeout`` later the answer is judged: it must
have come, be 200 and (if its body is JSON naming a guid) name the job's.
The judge moment is the check's timeout (there is no other timer), and
what the worker answered waits in the socket until then: the daemon is
not woken by each answer (see :mod:`.liveprobe`, whose
:class:`~turberfield_twisted.jobs.liveprobe.Prober` asks and judges; the
daemon's keeps one connection per job:
:class:`~turberfield_twisted.jobs.liveprobe.WireProbe`). With a
``live_timeout`` that is a whole number of phases, the judge moments of
one phase are the asks of another: a wakeup each. A check by watchdog
(``live_watchdog``) is one moment: at least one ``WATCHDOG=1`` ping on
the job's ready fd since the last check
(:class:`~turberfield_twisted.launch.interfaces.IWatchdog`).

After ``live_failures`` failed checks in a row the job is restarted like a
crash: ``over(job, reason)`` (the lifecycle's ``over_limit``: its exit
counts as a failure, restarted as its policy says, ``last_error`` giving
the reason), then SIGKILL to its group at once (a worker that does not
answer can't drain). The reason is a :class:`LivenessFailed`, a typed
record (``str()`` of it is what ``last_error`` says) that
``failure(guid)`` gives until the job table forgets the job. A job that stops
answering is so restarted within ``live_interval * live_failures +
live_timeout`` seconds of the start of its last good check (the judge of
the ``live_failures``-th failed check after it).
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from enum import StrEnum

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from turberfield_twisted.config.operations import Operations
from turberfield_twisted.jobs.job import EventKind, Job, JobEvent, JobState
from turberfield_twisted.jobs.livephase import Phase
from turberfield_twisted.jobs.liveprobe import Prober
from turberfield_twisted.launch.interfaces import IWatchdog

__all__ = ["LIVENESS_EVENT", "CheckBy", "Liveness", "LivenessFailed"]

#: How many phases of an interval (on the clock's grid of it) jobs' checks are spread
#: over: each wakes the daemon twice per interval (ask, judge), however many jobs share
#: it (a wakeup of the asyncio reactor costs about 150 us of CPU: 100 phases of 100 jobs
#: at 1 s would cost 3% of a core, 10 cost 0.15 to 0.3%).
PHASES = 10

#: The name of the event emitted (kind ``worker``, ``data`` the failure's JSON) as a
#: job is restarted for failing its liveness checks.
LIVENESS_EVENT = "liveness_failed"


class CheckBy(StrEnum):
    """How a job's liveness is checked."""

    HTTP = "http"  #: ``GET live_path``
    WATCHDOG = "watchdog"  #: ``WATCHDOG=1`` pings on its ready fd


@attrs.frozen
class LivenessFailed:
    """
    Why a ready job was restarted: ``failures`` checks ``by`` one way failed
    in a row, the first at ``since``, over ``failing_for`` seconds; ``last``
    says how the last one failed. What a cluster launcher may act on (a
    worker that does not answer may be on a partitioned node).
    """

    by: CheckBy
    failures: int
    since: float
    failing_for: float
    last: str

    def __str__(self) -> str:
        return (f"liveness failed: {self.failures} {self.by.value} checks in a row over"
                f" {self.failing_for:.1f}s ({self.last})")

    def as_json(self) -> dict[str, object]:
        """As the ``liveness_failed`` event's data gives it."""
        return {"reason": "liveness", "by": self.by.value, "failures": self.failures,
                "failing_for": round(self.failing_for, 3), "last": self.last}


#: Jobs that share a phase: by, interval, timeout (None: watchdog) and which of PHASES.
_PhaseKey = tuple[CheckBy, float, float | None, int]


@attrs.define(eq=False)
class _Check:
    """One ready job's checks: its phase, the failures in a row."""

    job: Job
    ops: Operations
    by: CheckBy
    phase: _PhaseKey
    #: When the check being judged was asked.
    asked: float = 0.0
    failures: int = 0
    since: float | None = None
    pings: int = 0
    #: Its first check is still to come (it may come sooner than a watchdog ping).
    first: bool = True
    #: How many checks passed (the tests wait on it).
    passed: int = 0


class Liveness:
    """
    Check each ready job of ``job(guid)`` as ``operations(job)`` says
    (:class:`~turberfield_twisted.config.operations.Operations`), through
    ``probe`` (:class:`~turberfield_twisted.jobs.liveprobe.Prober`) on
    ``reactor``; ``over(job, reason)`` stops one that failed, ``emit`` is
    told of it. ``random`` draws each job's phase. :meth:`observe` is subscribed to every job event.
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, probe: Prober,
                 job: Callable[[str], Job | None], operations: Callable[[Job], Operations],
                 over: Callable[[Job, str], None], emit: Callable[[JobEvent], None],
                 random: Callable[[], float] = random.random):
        self._reactor = reactor
        self._probe = probe
        self._job = job
        self._operations = operations
        self._over = over
        self._emit = emit
        self._random = random
        self._checks: dict[str, _Check] = {}
        self._phases: dict[_PhaseKey, Phase[_Check]] = {}
        self._failed: dict[str, LivenessFailed] = {}
        self._passed: dict[str, list[tuple[int, Deferred[None]]]] = {}

    # -- asked from outside -------------------------------------------------

    def observe(self, event: JobEvent) -> None:
        """A job event: checks begin as a job is ready, and end as it leaves ``ready``."""
        if event.kind is not EventKind.STATE:
            return
        if event.state is JobState.READY:
            job = self._job(event.guid)
            if job is not None:
                self.begin(job)
        else:
            self.end(event.guid)

    def failure(self, guid: str) -> LivenessFailed | None:
        """Why job ``guid`` was last restarted by its liveness checks (None: never)."""
        return self._failed.get(guid)

    def checking(self, guid: str) -> bool:
        """Whether job ``guid`` is being checked."""
        return guid in self._checks

    def passed(self, guid: str, count: int) -> Deferred[None]:
        """Fire once job ``guid`` has passed ``count`` checks in its run (cancel to stop)."""
        check = self._checks.get(guid)
        if check is not None and check.passed >= count:
            return succeed(None)
        waiting: list[tuple[int, Deferred[None]]] = self._passed.setdefault(guid, [])
        d: Deferred[None] = Deferred(lambda d: waiting.remove((count, d)))
        waiting.append((count, d))
        return d

    def begin(self, job: Job) -> None:
        """Check ``job`` (ready) from a phase of its own on, if its operations say to."""
        self.end(job.guid)
        ops = self._operations(job)
        if ops.live_interval is None:
            return
        by = CheckBy.HTTP
        if ops.live_watchdog:
            if IWatchdog.providedBy(job.process):
                by = CheckBy.WATCHDOG
            else:
                self.log.warn("job {guid}: its launcher reads no ready fd: liveness by HTTP,"
                              " not watchdog pings", guid=job.guid)
        # One of PHASES points of the interval on the clock's own grid, shared by every
        # job that draws it: their checks wake the daemon once between them.
        interval = ops.live_interval
        index = int(self._random() * PHASES)
        timeout = ops.live_timeout if by is CheckBy.HTTP else None
        key = (by, interval, timeout, index)
        check = self._checks[job.guid] = _Check(job, ops, by, key)
        if by is CheckBy.WATCHDOG:
            check.pings = IWatchdog(job.process).pings
        phase = self._phases.get(key)
        if phase is None:
            phase = self._phases[key] = Phase(self._reactor, interval, index / PHASES * interval,
                                              timeout, self._ask, self._judge,
                                              interval / PHASES)
        phase.join(job.guid, check)

    def end(self, guid: str) -> None:
        """Check job ``guid`` no more (it left ``ready``, or the daemon stops)."""
        check = self._checks.pop(guid, None)
        if check is None:
            return
        phase = self._phases.get(check.phase)
        if phase is not None and phase.leave(guid):
            del self._phases[check.phase]
        self._probe.forget(guid)
        for _, d in self._passed.pop(guid, []):
            d.cancel()

    def close(self) -> None:
        """End every job's checks."""
        for guid in list(self._checks):
            self.end(guid)

    # -- the checks -----------------------------------------------------------

    def _ask(self, checks: list[_Check], now: float) -> None:
        """A phase's moment: ask each of its jobs, or (watchdog) judge their pings at once."""
        for check in checks:
            check.asked = now
            if check.by is CheckBy.HTTP:
                self._probe.ask(check.job, check.ops.live_path, check.ops.live_timeout)
                continue
            job = check.job
            pings = IWatchdog(job.process).pings if job.process else check.pings
            fresh, check.pings = pings > check.pings, pings
            if not fresh and check.first:  # its phase may be shorter than a ping's period
                check.first = False
                continue
            check.first = False
            self._result(check, now, None if fresh else
                         f"no WATCHDOG=1 ping in {check.ops.live_interval:g}s")

    def _judge(self, checks: list[_Check]) -> None:
        """``live_timeout`` after a phase's moment: the verdict on each check it asked."""
        for check in checks:
            if self._checks.get(check.job.guid) is check:  # not ended since
                self._result(check, check.asked, self._probe.judge(check.job.guid))

    def _result(self, check: _Check, started: float, why: str | None) -> None:
        """One check's result (``why`` it failed, or None)."""
        job = check.job
        if self._checks.get(job.guid) is not check:
            return
        if why is None:
            check.failures, check.since = 0, None
            check.passed += 1
            self._wake(job.guid, check.passed)
            return
        check.failures += 1
        if check.since is None:
            check.since = started
        self.log.warn("job {guid}: liveness check {n} of {of} failed: {why}", guid=job.guid,
                      n=check.failures, of=check.ops.live_failures, why=why)
        if check.failures >= check.ops.live_failures:
            self._restart(check, why)

    def _restart(self, check: _Check, why: str) -> None:
        job = check.job
        assert check.since is not None
        now = self._reactor.seconds()
        failed = LivenessFailed(check.by, check.failures, check.since, now - check.since, why)
        self.end(job.guid)
        for gone in [guid for guid in self._failed if self._job(guid) is None]:
            del self._failed[gone]  # forgotten by the job table
        self._failed[job.guid] = failed
        self.log.error("job {guid}: {reason}: restarting it", guid=job.guid, reason=str(failed))
        self._emit(job.event(now, EventKind.WORKER, LIVENESS_EVENT, failed.as_json()))
        process = job.process
        self._over(job, str(failed))
        if process is not None and job.process is process:
            process.signal(signal.SIGKILL)

    def _wake(self, guid: str, passed: int) -> None:
        waiting = self._passed.get(guid, [])
        for entry in [entry for entry in waiting if entry[0] <= passed]:
            waiting.remove(entry)
            entry[1].callback(None)

